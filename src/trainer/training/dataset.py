"""A small synthetic YOLO-format detection dataset, for smoke runs, tests and clusters without internet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

# Three classes a tiny model can learn in a few epochs: filled shapes with distinct colours.
CLASSES = ("red_rect", "green_circle", "blue_rect")
COLOURS = ((220, 40, 40), (40, 200, 40), (40, 60, 220))


def make_dataset(root: Path, seed: int = 0, train: int = 32, val: int = 8, imgsz: int = 128) -> Path:
    """Writes images/, labels/ and data.yaml under root (same seed, same files); returns data.yaml."""
    if train < 1 or val < 1:
        raise ValueError("--train and --val must be at least 1")
    if imgsz < 64:
        raise ValueError("--imgsz must be at least 64")
    root = root.absolute()
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        images, labels = root / "images" / split, root / "labels" / split
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, lines = _sample(rng, imgsz)
            image.save(images / f"{split}_{i:04d}.jpg", quality=95)
            (labels / f"{split}_{i:04d}.txt").write_text("\n".join(lines) + "\n")
    data_yaml = root / "data.yaml"
    spec = {"path": str(root), "train": "images/train", "val": "images/val", "nc": len(CLASSES), "names": list(CLASSES)}
    data_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
    return data_yaml


def _sample(rng: np.random.Generator, size: int) -> tuple[Image.Image, list[str]]:
    image = Image.fromarray(rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    lines = []
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(0, len(CLASSES)))
        w, h = (int(v) for v in rng.integers(size // 8, size * 3 // 8, size=2))
        x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        box = (x0, y0, x0 + w, y0 + h)
        (draw.ellipse if CLASSES[cls] == "green_circle" else draw.rectangle)(box, fill=COLOURS[cls])
        lines.append(f"{cls} {(x0 + w / 2) / size:.6f} {(y0 + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}")
    return image, lines
