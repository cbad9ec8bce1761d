"""Real YOLOv5 trainings recorded by real MLflow servers (SQLite, PostgreSQL + S3), including faults."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
from mlflow.tracking import MlflowClient

from trainer.checkpoints import is_complete

from harness import (MODEL, MlflowServer, S3, Training, free_port, tiny_train_args, train, trainer_cmd, trainer_env,
                     wait_until)  # fmt: skip

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def background_training(server_url: str, cwd: Path, epochs: int, dataset: Path) -> Iterator[subprocess.Popen]:
    """A training that the test interrupts; it is killed if the test fails before it ends."""
    proc = subprocess.Popen(
        trainer_cmd("train", "--mlflow-uri", server_url, *tiny_train_args(dataset, epochs=epochs)),
        cwd=cwd, env=trainer_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_for_first_epoch(client: MlflowClient) -> None:
    def logged() -> bool:
        runs = client.search_runs([client.get_experiment_by_name("yolov5-coco128-demo").experiment_id])
        return bool(runs) and bool(client.get_metric_history(runs[0].info.run_id, "metrics/mAP_0.5"))

    wait_until(logged, 600, "first epoch")  # a deadline, not a delay: a loaded CI machine needs minutes


def wait_for_checkpoint(save_root: Path) -> None:
    """YOLOv5 writes an epoch's results.csv row before last.pt: wait for the checkpoint itself, complete."""
    wait_until(lambda: any(is_complete(p) for p in save_root.glob("*/weights/last.pt")), 600, "first complete last.pt")


def only_run(client: MlflowClient, experiment: str = "yolov5-coco128-demo"):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} was not created"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return runs[0]


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def assert_epochs_logged(client: MlflowClient, run_id: str, epochs: int) -> None:
    for key in ("metrics/mAP_0.5", "metrics/mAP_0.5_0.95", "train/box_loss", "val/obj_loss", "x/lr0"):
        history = client.get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == list(range(epochs)), key


def test_offline_network_namespace() -> None:
    """ci/test.sh runs pytest in a network namespace with only loopback; this proves it did."""
    if os.environ.get("MLFLOW_STACK_NETNS") != "1":
        pytest.skip("not inside the loopback-only network namespace (unshare -n unavailable; see docs/testing.md)")
    interfaces = [line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]]
    assert interfaces == ["lo"]


def test_sqlite_run_records_params_tags_epochs_artifacts_and_model(
    sqlite_training: Training, dataset: Path, tmp_path: Path
) -> None:
    sqlite_server, result = sqlite_training.server, sqlite_training.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Epoch" in result.stdout  # YOLOv5's own output is streamed for kubectl logs
    assert "is deprecated" not in result.stdout  # yolov5's known deprecation warnings are silenced

    client = MlflowClient(sqlite_server.url)
    run = only_run(client)
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("yolov5-synth-")
    assert f"run {run_id} FINISHED mAP@0.5=" in result.stderr
    first = result.stderr.splitlines()[0]  # the trainer's first line links the run page, to watch it live
    assert f"{sqlite_server.url}/#/experiments/{run.info.experiment_id}/runs/{run_id}/model-metrics?" in first, first
    assert run.data.params["epochs"] == "2"
    assert run.data.params["imgsz"] == "128"
    assert run.data.params["device"] == "cpu"
    assert run.data.params["hyp/lr0"] == "0.01"
    tags = run.data.tags
    assert (tags["device"], tags["gpu_available"], tags["dataset"]) == ("cpu", "false", str(dataset))
    assert (tags["k8s.job"], tags["k8s.pod"], tags["image"]) == ("train-abc", "train-abc-x1", "trainer:1.0")
    assert_epochs_logged(client, run_id, 2)
    assert run.data.metrics["epochs_completed"] == 2
    assert "best/metrics/mAP_0.5_0.95" in run.data.metrics

    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.name == "synth"
    assert str(dataset) in inp.dataset.source

    paths = artifact_paths(client, run_id)
    assert "logs/train.log" in paths
    for name in ("weights/best.pt", "weights/last.pt", "results.csv", "results.png", "confusion_matrix.png", "PR_curve.png"):
        assert f"training-output/{name}" in paths, name
    log_text = Path(client.download_artifacts(run_id, "logs/train.log", str(tmp_path / "dl"))).read_text()
    assert "epochs completed" in log_text

    version = client.get_model_version_by_alias(MODEL, "newest")
    assert version.run_id == run_id
    assert version.source.startswith("models:/m-")  # the logged MLflow Model (tests/model/test_model.py loads it)
    assert run.data.tags["registered_model"] == f"{MODEL}/{version.version}"


def test_postgres_and_s3_backend(postgres_s3_training: Training, s3: S3) -> None:
    server, result = postgres_s3_training.server, postgres_s3_training.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    client = MlflowClient(server.url)
    run = only_run(client, "pg-s3")
    assert run.info.status == "FINISHED"
    assert_epochs_logged(client, run.info.run_id, 2)
    keys = s3.keys("mlflow-shared")  # the server proxied the uploads into the bucket
    assert any(k.endswith(f"{run.info.run_id}/artifacts/logs/train.log") for k in keys), keys
    assert any(k.endswith(f"{run.info.run_id}/artifacts/training-output/weights/best.pt") for k in keys), keys


def test_broken_dataset_fails_and_keeps_the_log(sqlite_server: MlflowServer, dataset: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"path: {tmp_path / 'nowhere'}\ntrain: images/train\nval: images/val\nnc: 3\nnames: [a, b, c]\n")
    result = train(sqlite_server.url, *tiny_train_args(broken), cwd=tmp_path)
    assert result.returncode == 1
    client = MlflowClient(sqlite_server.url)
    run = only_run(client)
    assert run.info.status == "FAILED"
    log_text = Path(client.download_artifacts(run.info.run_id, "logs/train.log", str(tmp_path / "dl"))).read_text()
    assert "Dataset not found" in log_text  # the reason is readable from the MLflow UI


def test_sigterm_marks_run_killed_with_partial_artifacts(
    sqlite_server: MlflowServer, dataset: Path, tmp_path: Path
) -> None:
    client = MlflowClient(sqlite_server.url)
    with background_training(sqlite_server.url, tmp_path, 60, dataset) as proc:
        wait_for_first_epoch(client)  # so there is something partial to keep
        wait_for_checkpoint(tmp_path / "runs" / "train")
        proc.send_signal(signal.SIGTERM)  # what the kubelet sends on eviction or Job deletion
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    run = only_run(client)
    assert run.info.status == "KILLED"
    assert run.data.metrics["epochs_completed"] < 60
    paths = artifact_paths(client, run.info.run_id)
    assert "logs/train.log" in paths
    assert "training-output/weights/last.pt" in paths


def test_unreachable_server_gives_one_clear_line(dataset: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    result = train(f"http://127.0.0.1:{free_port()}", *tiny_train_args(dataset), "--wait-timeout", "4", cwd=tmp_path)
    assert result.returncode == 3
    assert time.monotonic() - started < 60
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1
    assert errors[0].startswith("trainer: error: MLflow tracking server http://127.0.0.1:")
    assert "did not answer within 4 s" in errors[0]


def test_bad_flag_value_is_one_line_and_creates_no_run(sqlite_server: MlflowServer, tmp_path: Path) -> None:
    result = train(sqlite_server.url, "--epochs", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "trainer: error: --epochs must be at least 1"
    assert MlflowClient(sqlite_server.url).get_experiment_by_name("yolov5-coco128-demo") is None


@pytest.mark.parametrize(
    ("args", "names"),
    [([], "--weights yolov5s.pt needs a download from github.com"),
     (["--weights", "", "--cfg", "yolov5n.yaml"], "--data coco128.yaml needs a download from ultralytics.com")],
    ids=["default-weights", "default-data"],
)  # fmt: skip
def test_offline_download_fails_in_seconds_with_one_line(tmp_path: Path, args: list[str], names: str) -> None:
    """The chart's defaults (yolov5s.pt, coco128.yaml) without internet: YOLOv5 alone retries for ~8.5 minutes."""
    if os.environ.get("MLFLOW_STACK_NETNS") != "1":
        pytest.skip("needs the loopback-only network namespace (no internet is the condition under test)")
    started = time.monotonic()
    # nothing listens there: the check must come before the server is contacted (else: exit 3 after 60 s)
    result = train(f"http://127.0.0.1:{free_port()}", *args, "--wait-timeout", "60", cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert time.monotonic() - started < 30
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"trainer: error: {names}, which is unreachable"), line
    assert not (tmp_path / "runs").exists()  # YOLOv5 was never started


def test_server_restart_mid_training_loses_no_epoch(sqlite_server: MlflowServer, dataset: Path, tmp_path: Path) -> None:
    client = MlflowClient(sqlite_server.url)
    epochs = 8
    with background_training(sqlite_server.url, tmp_path, epochs, dataset) as proc:
        wait_for_first_epoch(client)
        sqlite_server.stop(signal.SIGKILL)  # a crash, not a clean shutdown
        time.sleep(6)  # training goes on; an epoch or two finish while the server is away
        sqlite_server.start()
        out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    run = only_run(client)
    assert run.info.status == "FINISHED"
    assert_epochs_logged(client, run.info.run_id, epochs)
