"""Runs one tracked training: MLflow run around a YOLOv5 child process, live metrics, artifacts, status."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator, Mapping

import yaml

from trainer import datafiles
from trainer.bookkeeping import Bookkeeping
from trainer.config import TrainConfig, dataset_label
from trainer.datafiles import DataSpec
from trainer.model import model_logging
from trainer.training import torchrun
from trainer.training.child import Child, Signals, Tee

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from trainer.training.reporting import ResultsWatcher

log = logging.getLogger(__name__)

FINISH_SECONDS_MIN = 60  # minimum time spent retrying the final uploads while the server is away

# Environment variables (set by the chart through the downward API) that become run tags.
ENV_TAGS = {
    "TRAINER_IMAGE": "image",
    "TRAINER_GIT_COMMIT": "mlflow.source.git.commit",
    "KUBERNETES_NAMESPACE": "k8s.namespace",
    "KUBERNETES_JOB_NAME": "k8s.job",
    "KUBERNETES_POD_NAME": "k8s.pod",
    "KUBERNETES_NODE_NAME": "k8s.node",
}


@dataclass
class Outcome:
    status: str  # FINISHED, FAILED or KILLED
    exit_code: int
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)


class _LogFileHandler(logging.Handler):
    """Copies the trainer's own log lines into the log file (the console already has them on stderr)."""

    def __init__(self, tee: Tee) -> None:
        super().__init__()
        self._tee = tee
        self.setFormatter(logging.Formatter("trainer: %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self._tee.write((self.format(record) + "\n").encode(), console=False)


def yolov5_root() -> Path:
    spec = importlib.util.find_spec("yolov5")  # without importing it: that takes seconds
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the yolov5 package is not installed (pip install 'mlflow-stack-trainer[train]')")
    return Path(list(spec.submodule_search_locations)[0])


def _local(value: str) -> str:
    """Existing files go to YOLOv5 as absolute paths: a bare name would be looked up online."""
    return str(Path(value).absolute()) if value and Path(value).is_file() else value


def yolo_args(config: TrainConfig, hyp: Path, data: str) -> list[str]:
    return [
        "--data", data, "--weights", _local(config.weights), "--cfg", _local(config.cfg),
        "--hyp", str(hyp), "--epochs", str(config.epochs), "--batch-size", str(config.batch_size),
        "--imgsz", str(config.imgsz), "--device", config.device, "--workers", str(config.workers),
        "--optimizer", config.optimizer, "--patience", str(config.patience), "--seed", str(config.seed),
        "--project", str(config.save_dir.parent), "--name", config.name, "--exist-ok",
        *config.extra_args,
    ]  # fmt: skip


def run_params(config: TrainConfig, device: str, hyp: Path) -> dict[str, object]:
    params: dict[str, object] = {
        "epochs": config.epochs, "batch_size": config.batch_size, "imgsz": config.imgsz, "data": config.data,
        "weights": config.weights, "cfg": config.cfg, "hyp": hyp.name, "device": device,
        "workers": config.workers, "optimizer": config.optimizer, "patience": config.patience,
        "seed": config.seed, "extra_args": " ".join(config.extra_args),
        "nnodes": config.nnodes, "nproc_per_node": config.nproc_per_node,
    }  # fmt: skip
    hyperparameters = yaml.safe_load(hyp.read_text()) or {}
    params.update({f"hyp/{k}": v for k, v in hyperparameters.items()})
    return params


def device_tags(device: str, gpu: bool) -> dict[str, str]:
    return {"device": device if device in {"cpu", "auto", "mps"} else f"cuda:{device}", "gpu_available": str(gpu).lower()}


def run_tags(config: TrainConfig, env: Mapping[str, str]) -> dict[str, str]:
    tags = {
        "project": "mlflow-stack",
        "dataset": config.data,
        "weights": config.weights or "none (from scratch)",
        "mlflow.source.name": "trainer",
        "mlflow.source.type": "JOB",
    }
    tags.update({tag: env[var] for var, tag in ENV_TAGS.items() if env.get(var)})
    tags.update({k: v for k, v in (("sweep", config.sweep), ("variant", config.variant)) if v})
    tags.update(torchrun.run_tags(config, env))
    tags.update(config.tag)  # the user's --tag wins
    return tags


@dataclass
class Launch:
    child: Child
    signals: Signals
    hyp: Path
    spec: DataSpec | None
    log_file: Path


@contextlib.contextmanager
def launched(config: TrainConfig, env: Mapping[str, str], console: BinaryIO) -> Iterator[Launch]:
    """The YOLOv5 child started (under torchrun for DDP), its output in the log file, SIGTERM/SIGINT caught;
    the child is killed on leaving."""
    root = yolov5_root()
    hyp = datafiles.find("--hyp", config.hyp, root) or root / "data" / "hyps" / "hyp.scratch-low.yaml"
    logs = config.save_dir.parent / "logs" / config.name
    spec = datafiles.load(config.data, root, env)
    child_env = dict(env)
    data = _local(config.data)
    if spec is not None:  # YOLOv5 gets the yaml with an absolute path, and downloads into that path's parent
        data = str(spec.write(logs / "data.yaml"))
        child_env[datafiles.DATASETS_DIR_ENV] = str(spec.download_dir())
        child_env[model_logging.CHECK_ENV] = data  # the child checks its model on this dataset's first val image
    tee = Tee(logs / "train.log", console)
    handler = _LogFileHandler(tee)
    logging.getLogger("trainer").addHandler(handler)
    try:
        with Signals() as signals:
            command = torchrun.child_command(config) + yolo_args(config, hyp, data)
            child = Child(command, child_env, tee, logs / "device.json")
            try:
                yield Launch(child, signals, hyp, spec, logs / "train.log")
            finally:
                child.stop(force=True)
    finally:
        logging.getLogger("trainer").removeHandler(handler)
        tee.close()


def run(config: TrainConfig, env: Mapping[str, str], console: BinaryIO) -> Outcome:
    """One tracked training. Raises TrackingUnavailable before a run exists; never leaves a run RUNNING."""
    # YOLOv5 starts first: its imports take seconds, which the MLflow set-up in _tracked overlaps.
    with launched(config, env, console) as launch:
        return _tracked(config, env, launch)


def _tracked(config: TrainConfig, env: Mapping[str, str], launch: Launch) -> Outcome:
    from mlflow.entities import RunTag  # imported after the child started: mlflow takes a while to import
    from mlflow.tracking import MlflowClient

    from trainer import tracking
    from trainer.training.reporting import ResultsWatcher

    child, signals, hyp, spec = launch.child, launch.signals, launch.hyp, launch.spec
    tracking.wait_for_server(config.mlflow_uri, config.wait_timeout)
    client = MlflowClient(config.mlflow_uri)
    # Runs started together race to create the experiment and their rows: each call is retried (tracking.retry).
    setup_deadline = time.monotonic() + config.wait_timeout
    experiment_id = tracking.get_or_create_experiment(client, config.experiment, setup_deadline)
    run_id = tracking.retry(
        "creating the run",
        lambda: client.create_run(experiment_id, run_name=config.run_name, tags=run_tags(config, env)).info.run_id,
        setup_deadline, transient=tracking.is_transient,
    )  # fmt: skip
    log.info("MLflow run %s (%s) in experiment %r, live at %s", run_id, config.run_name, config.experiment,
             tracking.run_link(config.mlflow_uri, experiment_id, run_id))  # fmt: skip
    outcome = Outcome("FAILED", 1, run_id)
    watcher = ResultsWatcher(config.save_dir / "results.csv", client, run_id)
    book = Bookkeeping(max(config.wait_timeout, FINISH_SECONDS_MIN))
    monitor = None
    try:
        dataset = tracking.dataset_input(config.data, spec, dataset_label(config.data))
        book.attempt("logging the dataset input", lambda: client.log_inputs(run_id, datasets=[dataset]))
        device, gpu = child.device(signals) or (config.device, False)
        tags = [RunTag(k, v) for k, v in device_tags(device, gpu).items()]
        book.attempt("logging the device tags", lambda: client.log_batch(run_id, tags=tags))
        params = run_params(config, device, hyp)
        book.attempt("logging the parameters", lambda: tracking.log_params(client, run_id, params))
        child.go()  # params are in: training may start
        monitor = system_metrics(run_id, config) if config.system_metrics else None
        returncode = child.wait(watcher, signals)
        if signals.received is not None:
            outcome = Outcome("KILLED", 128 + signals.received, run_id)
        elif returncode == 0:
            outcome = Outcome("FINISHED", 0, run_id)
        else:
            log.error("YOLOv5 training exited with code %s", returncode)
    except Exception as exc:  # our own failure: still end the run and keep what exists
        log.exception("training wrapper failed: %s", exc)
        child.stop(force=True)
    finally:
        if monitor is not None:
            monitor.finish()
    _finish(client, config, outcome, watcher, spec, launch.log_file, book)
    if watcher.rows:
        outcome.metrics = dict(watcher.rows[-1].values)
    return outcome


def _finish(client: MlflowClient, config: TrainConfig, outcome: Outcome, watcher: ResultsWatcher,
            spec: DataSpec | None, log_file: Path, book: Bookkeeping) -> None:  # fmt: skip
    """Final metrics, artifacts, optional registration, then the run's end status, riding out server restarts."""
    from trainer import tracking

    deadline = time.monotonic() + max(config.wait_timeout, FINISH_SECONDS_MIN)
    summary = watcher.summary_metrics()
    watcher.queue(summary)
    best_epoch = int(next((m.value for m in summary if m.key == "best_epoch"), 0))
    if not watcher.flush_until(deadline):
        log.error("some metric values could not be logged: the tracking server did not come back")
    log.info("run ends %s; uploading artifacts", outcome.status)
    try:
        tracking.upload_artifacts(client, outcome.run_id, log_file, config.save_dir, deadline)
    except Exception as exc:  # noqa: BLE001 - the status below must still be set
        log.error("could not upload artifacts: %s", tracking.first_line(exc))
        if outcome.status == "FINISHED":  # without its weights the run is of no use
            outcome.status, outcome.exit_code = "FAILED", 1
    if outcome.status == "FINISHED":  # the detector as an MLflow Model, registered and promoted if asked
        from trainer.model.publishing import publish

        publish(client, config, outcome.run_id, spec, best_epoch, book)
    book.record(client, outcome.run_id)
    # The log upload above misses these last lines; the status is what the UI shows first.
    tracking.retry("ending the run", lambda: client.set_terminated(outcome.run_id, outcome.status), deadline + 30)


def system_metrics(run_id: str, config: TrainConfig) -> object | None:
    """CPU/GPU/memory metrics every 10 s (psutil; GPUs with nvidia-ml-py), as MLflow's system/* metrics
    (system/node-<rank>/* when several nodes train)."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, node_id=torchrun.node_id(config), tracking_uri=config.mlflow_uri)
        monitor.start()
        return monitor
    except Exception as exc:  # noqa: BLE001 - optional: missing psutil must not stop training
        log.info("system metrics off: %s", exc)
        return None
