"""The trained YOLOv5 detector as an MLflow pyfunc model ("models from code": MLflow copies this file into the model).

MLflow executes this file when the model is logged and again when it is loaded, so the top imports stay light;
torch and yolov5 are imported in load_context. The file imports nothing from the `trainer` package: a logged model
loads wherever its pip requirements are installed (the trainer image, `mlflow models serve`, a notebook).

Input: a DataFrame with one column `image` (JPEG/PNG bytes, or the same base64-encoded). Params: conf, iou, size
(pixels of the longer side YOLOv5 resizes to), max_det. Output: one row per detection, boxes in pixels of the
original image.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import tempfile
import threading
import warnings
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.model import PythonModel, PythonModelContext

COLUMNS = ("image_index", "xmin", "ymin", "xmax", "ymax", "confidence", "class", "name")
DEFAULT_PARAMS = {"conf": 0.25, "iou": 0.45, "size": 640, "max_det": 1000}

# Loading must never reach out: no ultralytics/hub probes, no requirement installs (the same settings as
# trainer/offline.py gives the training process; repeated here so the model needs no `trainer` package).
_OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",
    "ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS": "1",
    "YOLO_AUTOINSTALL": "false",
    "HF_HUB_OFFLINE": "1",
    "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",  # torch>=2.6 refuses yolov5's pickled checkpoints otherwise
    "GIT_PYTHON_REFRESH": "quiet",
}
# yolov5 7.0.14's own deprecated calls (pkg_resources at import, torch.cuda.amp.autocast on every call): nothing a
# caller can act on.
_KNOWN_WARNINGS = (
    (r"pkg_resources is deprecated as an API", UserWarning),
    (r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated", FutureWarning),
    (r"Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected", UserWarning),  # set on purpose, above
)


def pick_device(requested: str | None) -> str:
    """Like training's `auto`: CUDA when there is one, else cpu; an explicit 'cpu', 'cuda:0' or '0' is used as is."""
    import torch

    if not requested or requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    return f"cuda:{requested}" if requested.isdigit() else requested


def load_detector(weights: str, device: str) -> Any:
    """YOLOv5's AutoShape (letterbox, NMS) around the checkpoint, loaded without any download or hub look-up."""
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    settings = os.path.join(tempfile.gettempdir(), f"yolov5-model-{os.getuid()}")  # the home may be read-only
    os.environ.setdefault("YOLOV5_CONFIG_DIR", settings)
    os.environ.setdefault("YOLO_CONFIG_DIR", settings)
    for message, category in _KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    import torch
    from yolov5.models import common
    from yolov5.utils.general import LOGGER

    # DetectMultiBackend asks the Hugging Face hub about every path first; a local file needs no look-up.
    common.attempt_download_from_hub = lambda *args, **kwargs: None
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)  # like yolov5.load(verbose=False): no layer summary in the server's log
    try:
        backend = common.DetectMultiBackend(os.path.abspath(weights), device=torch.device(device), fuse=True)
        return common.AutoShape(backend, verbose=False).to(torch.device(device))
    finally:
        LOGGER.setLevel(level)


def decode_image(value: object, row: int) -> Any:
    """An RGB PIL image from JPEG/PNG bytes or their base64 text; anything else is the caller's error, naming the row.

    The two decoders are called directly, not through Image.open: once yolov5 has imported ultralytics, that is
    patched to install a HEIF plugin (pip, network) for any file Pillow does not recognise.
    """
    from PIL import Image, ImageOps
    from PIL.JpegImagePlugin import JpegImageFile
    from PIL.PngImagePlugin import PngImageFile

    try:
        if isinstance(value, str):  # JSON carries binary columns base64-encoded; not every path decodes them
            value = base64.b64decode(value, validate=True)
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected image bytes, got {type(value).__name__}")
        data = bytes(value)
        decoder = JpegImageFile if data.startswith(b"\xff\xd8\xff") else PngImageFile if data.startswith(
            b"\x89PNG\r\n\x1a\n") else None  # fmt: skip
        if decoder is None:
            raise ValueError("neither JPEG nor PNG data")
        image = decoder(io.BytesIO(data))
        if Image.MAX_IMAGE_PIXELS and image.width * image.height > 2 * Image.MAX_IMAGE_PIXELS:
            raise ValueError(f"{image.width}x{image.height} pixels is more than Pillow's limit")  # decompression bomb
        image.load()  # decode now: a truncated file fails here, not inside YOLOv5
        return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError, TypeError, SyntaxError, binascii.Error) as exc:
        raise MlflowException.invalid_parameter_value(
            f"image row {row}: not a decodable JPEG or PNG image ({type(exc).__name__}: {exc})"
        ) from None


def resolve_params(params: dict[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """Request params over the signature's defaults, checked so a bad value is a 400 naming it."""
    merged = {**defaults, **{k: v for k, v in (params or {}).items() if v is not None}}
    try:
        resolved = {"conf": float(merged["conf"]), "iou": float(merged["iou"]), "size": int(merged["size"]),
                    "max_det": int(merged["max_det"])}  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise MlflowException.invalid_parameter_value(f"bad prediction parameter: {exc}") from None
    for name in ("conf", "iou"):
        if not 0.0 <= resolved[name] <= 1.0:
            raise MlflowException.invalid_parameter_value(f"param {name} must be between 0 and 1, got {resolved[name]}")
    for name in ("size", "max_det"):
        if resolved[name] < 1:
            raise MlflowException.invalid_parameter_value(f"param {name} must be at least 1, got {resolved[name]}")
    return resolved


def detections_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype({"image_index": "int64", "xmin": "float64", "ymin": "float64", "xmax": "float64",
                         "ymax": "float64", "confidence": "float64", "class": "int64", "name": "str"})  # fmt: skip


class YoloDetector(PythonModel):
    """pyfunc wrapper: one YOLOv5 AutoShape call per input image."""

    def load_context(self, context: PythonModelContext) -> None:
        config = dict(context.model_config or {})
        self.device = pick_device(str(config.get("device") or "auto"))
        self.model = load_detector(context.artifacts["weights"], self.device)
        names = config.get("names") or self.model.names
        self.names = dict(enumerate(names)) if isinstance(names, (list, tuple)) else {int(k): v for k, v in names.items()}
        self.defaults = {**DEFAULT_PARAMS, **{k: config[k] for k in DEFAULT_PARAMS if k in config}}
        # The scoring server runs predict in worker threads, and conf/iou/max_det are attributes of the one model.
        self.lock = threading.Lock()

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:  # fmt: skip
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if len(frame) and "image" not in frame.columns:
            raise MlflowException.invalid_parameter_value(f"input needs a column `image`, got {list(frame.columns)}")
        settings = resolve_params(params, self.defaults)
        images = [decode_image(value, row) for row, value in enumerate(frame["image"] if len(frame) else [])]
        rows: list[dict[str, Any]] = []
        with self.lock:
            self.model.conf, self.model.iou, self.model.max_det = settings["conf"], settings["iou"], settings["max_det"]
            for index, image in enumerate(images):
                result = self.model(image, size=settings["size"])
                for *box, confidence, cls in result.xyxy[0].tolist():
                    rows.append({"image_index": index, "xmin": box[0], "ymin": box[1], "xmax": box[2], "ymax": box[3],
                                 "confidence": confidence, "class": int(cls),
                                 "name": str(self.names.get(int(cls), int(cls)))})  # fmt: skip
        return detections_frame(rows)


mlflow.models.set_model(YoloDetector())
