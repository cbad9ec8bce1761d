"""`trainer predict --model models:/NAME@ALIAS IMAGE...`: the registered detector's boxes as JSON lines.

The quick check after a training (and what the chart's tests can call): it loads the model the way any MLflow tool
does (`mlflow.pyfunc.load_model`), so what it prints is what `mlflow models serve` answers.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TextIO


class PredictError(ValueError):
    """A bad flag or image; the message names it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model URI, e.g. models:/yolo-det@champion or models:/m-<id>")
    parser.add_argument("--mlflow-uri", default=os.environ.get("MLFLOW_TRACKING_URI", ""),
                        help="MLflow tracking URI [env MLFLOW_TRACKING_URI]")  # fmt: skip
    parser.add_argument("--conf", type=float, help="confidence threshold [model default 0.25]")
    parser.add_argument("--iou", type=float, help="NMS IoU threshold [model default 0.45]")
    parser.add_argument("--size", type=int, help="inference size in pixels [model default: the training's imgsz]")
    parser.add_argument("--max-det", type=int, help="maximum detections per image [model default 1000]")
    parser.add_argument("--device", default="", help="auto (CUDA if available, else cpu), cpu or cuda:0 [auto]")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="JPEG or PNG files")


def read_images(paths: list[Path]) -> list[bytes]:
    """Every image read and decoded before the model loads: a bad one fails in a second, naming it."""
    from trainer.model.detector_model import decode_image

    contents = []
    for row, path in enumerate(paths):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PredictError(f"{path}: {exc.strerror or exc}") from None
        try:
            decode_image(data, row)
        except Exception:  # noqa: BLE001 - MlflowException from the model's own check
            raise PredictError(f"{path}: not a decodable JPEG or PNG image") from None
        contents.append(data)
    return contents


def params(args: argparse.Namespace) -> dict[str, object]:
    given = {"conf": args.conf, "iou": args.iou, "size": args.size, "max_det": args.max_det}
    for name in ("conf", "iou"):
        if given[name] is not None and not 0.0 <= given[name] <= 1.0:
            raise PredictError(f"--{name} must be between 0 and 1")
    for name in ("size", "max_det"):
        if given[name] is not None and given[name] < 1:
            raise PredictError(f"--{name.replace('_', '-')} must be at least 1")
    return {k: v for k, v in given.items() if v is not None}


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Prints one JSON object per detection; returns the number of detections."""
    chosen = params(args)
    images = read_images(args.images)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stdout/stderr carry only the results
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    if args.mlflow_uri:
        mlflow.set_tracking_uri(args.mlflow_uri)
    try:
        model = mlflow.pyfunc.load_model(args.model, model_config={"device": args.device} if args.device else None)
    except (MlflowException, OSError) as exc:
        raise PredictError(f"--model {args.model}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    found = model.predict(pd.DataFrame({"image": images}), params=chosen or None)
    for record in found.to_dict(orient="records"):
        record = {"image": str(args.images[int(record["image_index"])]), **record}
        out.write(json.dumps(record) + "\n")
    out.flush()
    return len(found)

