"""`trainer make-dataset`: a deterministic synthetic YOLO dataset."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml
from PIL import Image

from harness import trainer_cmd, trainer_env


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "data.yaml"):
        h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def make(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(trainer_cmd("make-dataset", str(root), *args), capture_output=True, text=True, env=trainer_env())


def test_layout_labels_and_data_yaml(tmp_path: Path) -> None:
    result = make(tmp_path / "ds", "--train", "5", "--val", "2", "--imgsz", "96")
    assert result.returncode == 0, result.stderr
    data_yaml = Path(result.stdout.strip())
    spec = yaml.safe_load(data_yaml.read_text())
    assert spec["path"] == str((tmp_path / "ds").absolute())  # absolute: YOLOv5 resolves relative paths elsewhere
    assert spec["nc"] == len(spec["names"]) == 3
    images = sorted((tmp_path / "ds" / "images" / "train").glob("*.jpg"))
    assert len(images) == 5 and len(list((tmp_path / "ds" / "images" / "val").glob("*.jpg"))) == 2
    assert Image.open(images[0]).size == (96, 96)
    for label in (tmp_path / "ds" / "labels").rglob("*.txt"):
        for line in label.read_text().splitlines():
            cls, *box = line.split()
            assert 0 <= int(cls) < 3
            assert all(0.0 < float(v) <= 1.0 for v in box)


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert make(tmp_path / name, "--seed", seed, "--train", "4", "--val", "1").returncode == 0
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_bad_size_is_one_readable_line(tmp_path: Path) -> None:
    result = make(tmp_path / "ds", "--train", "0")
    assert result.returncode == 2
    assert result.stderr.strip() == "trainer: error: --train and --val must be at least 1"
