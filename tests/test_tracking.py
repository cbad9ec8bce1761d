"""The MLflow side: retries and their one-line error text, experiments, run links, artifact uploads."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from trainer.tracking import first_line, get_or_create_experiment, retry, run_link, upload_artifacts


def test_retry_rides_out_failures_without_a_message() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError()  # requests/urllib3 errors can have an empty message
        return "ok"

    assert retry("logging", flaky, time.monotonic() + 5, interval=0.01) == "ok"
    assert len(calls) == 3


def test_retry_gives_up_at_the_deadline() -> None:
    def down() -> None:
        raise ConnectionError("connection refused")

    with pytest.raises(ConnectionError):
        retry("logging", down, time.monotonic() + 0.05, interval=0.01)


@pytest.mark.parametrize(
    ("exc", "text"),
    [(ConnectionError(), "ConnectionError"), (ValueError("bad\ndetails"), "bad"), (RuntimeError("x" * 500), "x" * 300)],
)
def test_first_line(exc: BaseException, text: str) -> None:
    assert first_line(exc) == text


def test_a_cut_off_checkpoint_is_left_out_and_said_so(sqlite_server, tmp_path: Path, caplog) -> None:
    torch = pytest.importorskip("torch")
    save_dir = tmp_path / "run"
    (save_dir / "weights").mkdir(parents=True)
    torch.save({"w": torch.zeros(1000)}, save_dir / "weights" / "best.pt")
    whole = (save_dir / "weights" / "best.pt").read_bytes()
    (save_dir / "weights" / "last.pt").write_bytes(whole[: len(whole) // 2])  # SIGKILL while torch.save wrote it
    (save_dir / "results.csv").write_text("epoch,metrics/mAP_0.5\n0,0.1\n")
    log_file = tmp_path / "train.log"
    log_file.write_text("log\n")
    client = MlflowClient(sqlite_server.url)
    run_id = client.create_run(get_or_create_experiment(client, "ckpt")).info.run_id

    with caplog.at_level(logging.WARNING, logger="trainer"):
        upload_artifacts(client, run_id, log_file, save_dir, time.monotonic() + 60)

    uploaded = {f.path for f in client.list_artifacts(run_id, "training-output")}
    uploaded |= {f.path for f in client.list_artifacts(run_id, "training-output/weights")}
    assert "training-output/weights/best.pt" in uploaded
    assert "training-output/results.csv" in uploaded
    assert "training-output/weights/last.pt" not in uploaded
    assert "left out training-output/weights/last.pt: incomplete checkpoint" in caplog.text


def test_a_new_experiment_opens_as_model_training_and_an_existing_one_is_left_alone(sqlite_server) -> None:
    client = MlflowClient(sqlite_server.url)
    created = client.get_experiment(get_or_create_experiment(client, "fresh"))
    assert created.tags.get("mlflow.experimentKind") == "custom_model_development"
    theirs = client.create_experiment("theirs", tags={"mlflow.experimentKind": "genai_development"})
    assert get_or_create_experiment(client, "theirs") == theirs
    assert client.get_experiment(theirs).tags["mlflow.experimentKind"] == "genai_development"


def test_run_link_points_at_the_run_page() -> None:
    assert run_link("http://127.0.0.1:5000/", "3", "abc") == (
        "http://127.0.0.1:5000/#/experiments/3/runs/abc/model-metrics?workflowType=machine_learning"
    )
    assert run_link("sqlite:///x.db", "3", "abc") == "sqlite:///x.db"
