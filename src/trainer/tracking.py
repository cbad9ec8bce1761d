"""The MLflow side of a run: waiting for the server, creating the run, inputs, artifacts, model registry."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

from trainer.checkpoints import incomplete

if TYPE_CHECKING:  # mlflow is imported inside the functions: `trainer` starts YOLOv5 before paying for it
    from mlflow.entities import DatasetInput

    from trainer.datafiles import DataSpec
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)
T = TypeVar("T")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """One readable line for a log or an error message; an empty message falls back to the exception's type."""
    lines = str(exc).splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]


# MLflow 3 marks an experiment's kind with this tag; ours hold model trainings, not GenAI apps (traces, judges).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# MLflow 3.17's UI picks its view from ?workflowType= (else the browser's last choice, first GenAI), not from the tag.
UI_WORKFLOW = "workflowType=machine_learning"


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """The run's metric charts in the MLflow UI's model-training view (for a server URI), else the tracking URI."""
    if not uri.startswith(("http://", "https://")):
        return uri
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics?{UI_WORKFLOW}"


class TrackingUnavailable(RuntimeError):
    """The tracking server did not answer in time."""


def wait_for_server(uri: str, timeout: float, sleep: Callable[[float], None] = time.sleep) -> None:
    """Polls <uri>/health with doubling back-off (1 s .. 10 s) until it answers 200 or timeout passes."""
    if not uri.startswith(("http://", "https://")):
        return  # file or database URIs have no server to wait for
    url = uri.rstrip("/") + "/health"
    # the CA MLflow's client verifies the server with (MLFLOW_TRACKING_SERVER_CERT_PATH), so both trust the same server
    context = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)
    deadline = time.monotonic() + timeout
    delay = 1.0
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() + delay > deadline:
            raise TrackingUnavailable(f"MLflow tracking server {uri} did not answer within {timeout:g} s ({last})")
        log.info("waiting for MLflow at %s (%s); retrying in %.0f s", uri, last, delay)
        sleep(delay)
        delay = min(delay * 2, 10.0)


# What a server error says when another writer got in the way: a unique row inserted by two runs at once (SQLite,
# PostgreSQL), a locked SQLite file, a deadlock or a serialization failure. The same call succeeds when repeated.
_RACE_SIGNS = ("IntegrityError", "UNIQUE constraint", "duplicate key", "database is locked", "deadlock",
               "could not serialize")  # fmt: skip
_TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "ABORTED", "DEADLINE_EXCEEDED"}


def is_transient(exc: BaseException) -> bool:
    """Worth another try: the server was unreachable or overloaded, or lost a race with a concurrent writer.
    Anything else (refused credentials, an invalid value) fails the same way every time."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, OSError):  # connection refused or reset, timeouts (requests' errors are OSErrors too)
        return True
    if isinstance(exc, MlflowException):
        return exc.error_code in _TRANSIENT_CODES or any(sign in str(exc.message) for sign in _RACE_SIGNS)
    return False


def retry(what: str, action: Callable[[], T], deadline: float, interval: float = 2.0,
          transient: Callable[[Exception], bool] | None = None) -> T:  # fmt: skip
    """Runs action until it succeeds or the deadline passes (then re-raises): rides out server restarts.
    With `transient`, an error it does not accept is raised at once."""
    while True:
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - any failure of the remote call is worth a retry
            if (transient is not None and not transient(exc)) or time.monotonic() + interval > deadline:
                raise
            log.warning("%s failed (%s); retrying in %.0f s", what, first_line(exc, 200), interval)
            time.sleep(interval)


def get_or_create_experiment(client: MlflowClient, name: str, deadline: float | None = None) -> str:
    """The experiment's id, created if missing and marked as model training (an existing one keeps its owner's
    choice); runs started together race to create it, and all of them win."""
    from mlflow.exceptions import MlflowException

    def once() -> str:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(name, tags=dict([EXPERIMENT_KIND]))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS" and not is_transient(exc):
                raise
            # Another run created it between our two calls (its commit may not be visible yet: then retry).
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    deadline = time.monotonic() + 60 if deadline is None else deadline
    return retry(f"getting or creating experiment {name!r}", once, deadline, interval=1.0, transient=_lost_race)


def _lost_race(exc: Exception) -> bool:
    return is_transient(exc) or getattr(exc, "error_code", "") == "RESOURCE_ALREADY_EXISTS"


def log_params(client: MlflowClient, run_id: str, params: dict[str, object]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)) for k, v in params.items()]
    for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
        client.log_batch(run_id, params=items[start : start + 100])


def dataset_input(data: str, spec: DataSpec | None, label: str) -> DatasetInput:
    """Describes the dataset as an MLflow input: name, where it came from, and a digest of its contents.

    `spec` is the yaml as YOLOv5 is given it (trainer.datafiles), so the counts are of the images it trains on."""
    from mlflow.entities import Dataset, DatasetInput

    digest = hashlib.sha256()
    profile: dict[str, object] = {}
    if spec is not None:
        digest.update(spec.source.read_bytes())
        for split in ("train", "val", "test"):
            folders = [p for p in spec.splits(split) if p.is_dir()]
            if folders:
                files = sorted(f for folder in folders for f in folder.rglob("*") if f.is_file())
                profile[f"{split}_images"] = len(files)
                for file in files:
                    digest.update(f"{file.relative_to(spec.root) if file.is_relative_to(spec.root) else file}:"
                                  f"{file.stat().st_size}\n".encode())  # fmt: skip
        names = spec.spec.get("names")
        profile["classes"] = spec.spec.get("nc") or (len(names) if isinstance(names, (list, dict)) else None)
        source, source_type = str(spec.source), "local"
    else:
        digest.update(data.encode())
        source, source_type = data, "yolov5"  # a URL YOLOv5 fetches itself
    dataset = Dataset(label, digest.hexdigest()[:16], source_type, json.dumps({"uri": source}), profile=json.dumps(profile))
    return DatasetInput(dataset)


def upload_artifacts(client: MlflowClient, run_id: str, log_file: Path, save_dir: Path, deadline: float) -> None:
    """The log under logs/ and the YOLOv5 run folder under training-output/ (whatever exists by now).

    A weight file cut off mid-write is left out (and said so, before the log goes up): a truncated .pt in
    MLflow looks like a usable checkpoint until someone loads it.
    """
    broken = incomplete(save_dir) if save_dir.is_dir() else []
    for path in broken:
        log.warning("left out training-output/%s: incomplete checkpoint (training stopped while it was written)",
                    path.relative_to(save_dir).as_posix())  # fmt: skip
    if log_file.exists():
        retry("uploading the training log", lambda: client.log_artifact(run_id, str(log_file), "logs"), deadline)
    if save_dir.is_dir():
        retry("uploading training output", lambda: _log_folder(client, run_id, save_dir, "training-output", set(broken)),
              deadline)  # fmt: skip


def _log_folder(client: MlflowClient, run_id: str, folder: Path, artifact_path: str, skip: set[Path]) -> None:
    """client.log_artifacts, leaving out `skip` (MLflow's HTTP artifact repository uploads file by file as well)."""
    if not skip:
        client.log_artifacts(run_id, str(folder), artifact_path)
        return
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p not in skip):
        parent = path.parent.relative_to(folder).as_posix()
        client.log_artifact(run_id, str(path), artifact_path if parent == "." else f"{artifact_path}/{parent}")


def register_model(client: MlflowClient, run_id: str, name: str, alias: str, model_id: str = "") -> str:
    """Registers the run's logged model (models:/<model_id>) as a new model version; returns the version.
    Without a model_id the source is the run's weights folder (callers that only exercise the registry).

    Idempotent, so a caller may retry it whole: runs registering versions of one model at once race on the model's
    creation and on the next version number, and a retry after a lost answer must not add a second version."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    mine = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    source = f"models:/{model_id}" if model_id else f"runs:/{run_id}/training-output/weights"
    version = mine[0].version if mine else client.create_model_version(
        name, source, run_id=run_id, model_id=model_id or None
    ).version
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return str(version)
