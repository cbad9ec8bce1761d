"""Makes YOLOv5 7.0.14 run without internet and on current libraries, inside the training process.

Everything here is applied by the training child process before it imports yolov5, so callers need no
special environment. Dataset and weight downloads the user asks for (e.g. --data coco128.yaml) still work
where the cluster has internet; nothing else reaches out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

# Variables that switch off network side-trips of yolov5/ultralytics/huggingface/mlflow.
OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",  # ultralytics' is_online() DNS probe at import
    "ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS": "1",  # train.main() -> check_requirements() -> pip
    "YOLO_AUTOINSTALL": "false",
    "HF_HUB_OFFLINE": "1",  # weight names are looked up on the hub before GitHub
    "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",  # torch>=2.6 refuses yolov5's pickled checkpoints otherwise
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GIT_PYTHON_REFRESH": "quiet",  # gitpython is imported by yolov5; the image has no git
    "WANDB_MODE": "disabled",
}


# Deprecation warnings raised by yolov5 7.0.14's own calls (message, category, module that calls): nothing a user
# can act on, and the autocast one is printed once per batch into the console, `kubectl logs` and train.log.
KNOWN_WARNINGS = (
    (r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated", FutureWarning, r"yolov5(\.|$)"),
    (r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated", FutureWarning, r"yolov5(\.|$)"),
    (r"pkg_resources is deprecated as an API", UserWarning, r"yolov5(\.|$)"),
)


def quiet_known_warnings() -> None:
    """Ignores exactly KNOWN_WARNINGS; every other warning is still printed."""
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def config_dir() -> Path:
    """Writable folder for fonts and settings (the image's root filesystem is read-only)."""
    return Path(os.environ.get("YOLOV5_CONFIG_DIR") or Path(tempfile.gettempdir()) / f"trainer-{os.getuid()}")


def prepare_environment() -> None:
    """Sets offline defaults (the caller's explicit values win) and a local font, before yolov5 is imported."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    cfg = config_dir()
    os.environ.setdefault("YOLOV5_CONFIG_DIR", str(cfg))
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cfg))
    os.environ.setdefault("MPLCONFIGDIR", str(cfg / "matplotlib"))
    install_fonts(cfg)


def install_fonts(cfg: Path) -> None:
    """YOLOv5 downloads Arial.ttf for its plots unless the file is in its config folder: use matplotlib's font."""
    import matplotlib

    cfg.mkdir(parents=True, exist_ok=True)
    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (cfg / name).exists():
            shutil.copyfile(source, cfg / name)


def patch_yolov5() -> None:
    """Shims for APIs yolov5 7.0.14 uses that newer libraries removed, and no model-hub look-ups."""
    import numpy as np
    from PIL import ImageFont

    if not hasattr(np, "trapz"):  # removed in numpy 2.4; yolov5's metrics integrate with it
        np.trapz = np.trapezoid

    if not hasattr(ImageFont.FreeTypeFont, "getsize"):  # removed in Pillow 10; used by yolov5's plots

        def getsize(self: ImageFont.FreeTypeFont, text: str, *args: object, **kwargs: object) -> tuple[int, int]:
            left, top, right, bottom = self.getbbox(text, *args, **kwargs)
            return right, bottom

        ImageFont.FreeTypeFont.getsize = getsize

    from yolov5.utils import downloads

    downloads.attempt_download_from_hub = lambda *args, **kwargs: None
