"""Logs a finished training's detector as an MLflow Model (MLflow 3 LoggedModel, linked to the run and its best epoch).

The model is trainer/model/detector_model.py ("models from code") plus the weights as its one artifact: loadable with
`mlflow.pyfunc.load_model`, servable with `mlflow models serve`, with a signature, an input example (one validation
image) and the exact versions of what it needs.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer import datafiles
from trainer.checkpoints import is_complete
from trainer.tracking import is_transient, retry

if TYPE_CHECKING:
    from mlflow.models.signature import ModelSignature

    from trainer.datafiles import DataSpec
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

MODEL_NAME = "detector"  # the LoggedModel's name (its page title); the registry name is --register-model
MODEL_FILE = Path(__file__).with_name("detector_model.py")
# What the model imports when it loads and predicts, pinned to the versions this trainer has installed.
REQUIREMENTS = ("mlflow", "torch", "torchvision", "yolov5", "numpy", "pandas", "pillow", "opencv-python",
                "opencv-python-headless", "setuptools")  # fmt: skip
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
# The training child checks the model before it exits, while torch and yolov5 are still imported there: in the parent
# (which never imports them otherwise) the same check cost about 4.5 s of imports per training.
CHECK_ENV = "TRAINER_MODEL_CHECK"  # the dataset yaml whose example image (example_image) the child predicts on
CHECK_FILE = "model-check.json"  # in the training's save_dir: which weights the child checked, and the error if any


@dataclass(frozen=True)
class LoggedDetector:
    model_id: str
    model_uri: str  # models:/m-...
    weights: str  # best.pt or last.pt


def pick_weights(save_dir: Path) -> Path | None:
    """best.pt, else last.pt; a file cut off mid-write does not count."""
    for name in ("best.pt", "last.pt"):
        path = save_dir / "weights" / name
        if path.is_file() and is_complete(path):
            return path
    return None


def pip_requirements() -> list[str]:
    """name==version for each needed package installed here (not inferred by MLflow: that loads the model again)."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def example_image(spec: DataSpec | None) -> Path | None:
    """The first validation image of the dataset (a folder `val:` entry, found by trainer.datafiles' rule)."""
    folders = [p for p in spec.splits("val") if p.is_dir()] if spec is not None else []
    return next((p for p in sorted(folders[0].rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES), None) if folders else None


def signature(imgsz: int) -> ModelSignature:
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    outputs = Schema([ColSpec("long", "image_index"), *(ColSpec("double", c) for c in ("xmin", "ymin", "xmax", "ymax")),
                      ColSpec("double", "confidence"), ColSpec("long", "class"), ColSpec("string", "name")])  # fmt: skip
    params = ParamSchema([ParamSpec("conf", "double", 0.25), ParamSpec("iou", "double", 0.45),
                          ParamSpec("size", "long", imgsz), ParamSpec("max_det", "long", 1000)])  # fmt: skip
    return ModelSignature(inputs=Schema([ColSpec("binary", "image")]), outputs=outputs, params=params)


def check_prediction(weights: Path, model_config: dict[str, Any], example: Any) -> None:
    """Loads the model as MLflow will and predicts on the input example; raises if that fails, before any upload.
    (MLflow's own check of the example, in Model.log, only logs a warning: a broken model would be registered.)"""
    from mlflow.pyfunc.model import PythonModelContext

    from trainer.model import detector_model

    model = detector_model.YoloDetector()
    context = PythonModelContext(artifacts={"weights": str(weights)}, model_config=model_config)
    model.load_context(context)
    result = model.predict(context, example)
    if list(result.columns) != list(detector_model.COLUMNS):
        raise RuntimeError(f"the model's prediction has columns {list(result.columns)}")


def check_after_training(save_dir: Path, env: dict[str, str]) -> None:
    """In the training child, after YOLOv5 saved its weights: check_prediction on them, its outcome written to
    save_dir/CHECK_FILE for log_detector. Never raises: a model that fails the check is not logged, the run stays."""
    data = env.get(CHECK_ENV, "")
    image = example_image(datafiles.load(data, Path(data).parent, env)) if data else None
    weights = pick_weights(save_dir)
    if image is None or weights is None:
        return
    import pandas as pd

    try:
        check_prediction(weights, {}, pd.DataFrame({"image": [image.read_bytes()]}))
        error = ""
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which logs no model then
        error = f"{type(exc).__name__}: {exc}"
    stat = weights.stat()
    result = {"weights": weights.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "error": error}
    partial = save_dir / (CHECK_FILE + ".tmp")
    partial.write_text(json.dumps(result))
    partial.rename(save_dir / CHECK_FILE)  # the parent never reads half a file


def checked_by_child(save_dir: Path, weights: Path) -> str | None:
    """The child's check of exactly these weights: "" passed, else its error; None when it did not check them."""
    try:
        result = json.loads((save_dir / CHECK_FILE).read_text())
    except (OSError, ValueError):
        return None
    stat = weights.stat()
    if (result.get("weights"), result.get("size"), result.get("mtime_ns")) != (weights.name, stat.st_size,
                                                                                 stat.st_mtime_ns):  # fmt: skip
        return None
    return str(result.get("error") or "")


def _pyfunc_without_second_load() -> types.SimpleNamespace:
    """mlflow.pyfunc as Model.log's flavor, minus Model.log's own check of the input example: that loads the model
    once more (importing torch into this process) and only warns on failure; check_prediction has done it and raises."""
    import mlflow.pyfunc

    def save_model(validate_serving_input: bool = True, **kwargs: Any) -> None:  # noqa: ARG001 - Model.log reads it
        mlflow.pyfunc.save_model(**kwargs)

    return types.SimpleNamespace(__name__=mlflow.pyfunc.__name__, save_model=save_model)


def log_detector(client: MlflowClient, tracking_uri: str, run_id: str, save_dir: Path, spec: DataSpec | None,
                 imgsz: int, best_epoch: int, deadline: float) -> LoggedDetector | None:  # fmt: skip
    """Logs the run's detector; None when there are no usable weights. Transient server errors are retried."""
    import pandas as pd
    from mlflow.models import Model
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    weights = pick_weights(save_dir)
    if weights is None:
        log.warning("no complete best.pt or last.pt: no model logged")
        return None
    started = time.monotonic()
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")  # a uv.lock in the working directory is not our model's
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # progress bars garble train.log
    image = example_image(spec)
    example = pd.DataFrame({"image": [image.read_bytes()]}) if image else None
    if example is not None:
        error = checked_by_child(save_dir, weights)
        if error is None:
            check_prediction(weights, {}, example)
        elif error:
            raise RuntimeError(f"the model does not load and predict on the input example: {error}")
    else:
        log.warning("no validation image found in %s: the model is logged without an input example",
                    spec.source if spec is not None else "the dataset")

    run = retry("reading the run", lambda: client.get_run(run_id), deadline, transient=is_transient)
    # Created here, not by Model.log: that would put it in the default experiment unless one is active.
    model = retry(
        "creating the logged model",
        lambda: client.create_logged_model(run.info.experiment_id, name=MODEL_NAME, source_run_id=run_id,
                                           params=dict(run.data.params), model_type="object-detection",
                                           tags={"weights": weights.name}),
        deadline, transient=is_transient,
    )  # fmt: skip

    # mlflow.pyfunc.log_model is Model.log(flavor=mlflow.pyfunc) without `run_id`: that would need an active run.
    # No model_config: Model.log copies it into the run's params (where `device` is taken). The class names are in
    # the checkpoint; the device is `auto` unless the loader's model_config (or SERVING_MODEL_CONFIG) says otherwise.
    flavor = _pyfunc_without_second_load()

    def log_it() -> None:
        with _use_tracking_uri(tracking_uri):  # Model.log talks to the process-wide tracking URI
            Model.log(
                artifact_path=None, name=MODEL_NAME, flavor=flavor, run_id=run_id, model_id=model.model_id,
                step=best_epoch, python_model=str(MODEL_FILE), artifacts={"weights": str(weights)},
                signature=signature(imgsz), input_example=example, pip_requirements=pip_requirements(),
                validate_serving_input=False,
            )

    retry("logging the model", log_it, deadline, transient=is_transient)  # same model id: a retry overwrites
    log.info("logged the model %s (%s, step %d) in %.1f s", f"models:/{model.model_id}", weights.name, best_epoch,
             time.monotonic() - started)  # fmt: skip
    return LoggedDetector(model.model_id, f"models:/{model.model_id}", weights.name)
