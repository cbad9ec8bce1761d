"""Four trainings at once against one MLflow server (SQLite with the chart's worker count; PostgreSQL + S3).

Same experiment (created by whichever run gets there first), same dataset, versions of one registered model and one
alias: every shared row is written by four runs at the same moment, twice the server's workers. No run may fail
because another one runs. (Eight writers of the same rows at once, without the trainings: tests/test_races.py.)
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness import MlflowServer, Postgres, S3, chart_server_workers, trainer_cmd, trainer_env

# The trainings share the machine's cores: on 2 busy cores eight took 10+ minutes a round; four take about half.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

RUNS = 4
EPOCHS = 2
EXPERIMENT = "parallel"
MODEL = "parallel-detector"
SUMMARY = {"best_epoch", "epochs_completed"}  # logged once at the end, not per epoch


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 64 px images: the trainings share two cores."""
    from trainer.training.dataset import make_dataset

    return make_dataset(tmp_path_factory.mktemp("parallel") / "shapes", seed=1, train=8, val=4, imgsz=64)


def train_at_once(server_url: str, data: Path, cwd: Path) -> list[subprocess.CompletedProcess]:
    """Starts RUNS trainers together and waits for all of them."""
    args = ["--data", str(data), "--weights", "", "--cfg", "yolov5n.yaml", "--imgsz", "64", "--batch-size", "4",
            "--epochs", str(EPOCHS), "--workers", "0", "--system-metrics", "false", "--experiment", EXPERIMENT,
            "--register-model", MODEL, "--model-alias", "champion"]  # fmt: skip
    procs = [
        subprocess.Popen(trainer_cmd("train", "--mlflow-uri", server_url, *args, "--run-name", f"par-{i}"), cwd=cwd,
                         env=trainer_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for i in range(RUNS)
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=900)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def assert_all_recorded(client: MlflowClient, results: list[subprocess.CompletedProcess]) -> None:
    failed = [f"run {i} exit {r.returncode}:\n{r.stderr[-2500:]}" for i, r in enumerate(results) if r.returncode != 0]
    assert not failed, "\n".join(failed)
    for i, r in enumerate(results):
        assert "failed after retries" not in r.stderr, f"run {i}:\n{r.stderr[-2500:]}"

    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"par-{i}" for i in range(RUNS)]
    for run in runs:
        run_id, name = run.info.run_id, run.info.run_name
        assert run.info.status == "FINISHED", name
        per_epoch = [k for k in run.data.metrics if k not in SUMMARY and not k.startswith("best/")]
        assert "metrics/mAP_0.5" in per_epoch, (name, sorted(run.data.metrics))
        for key in per_epoch:  # every epoch once: nothing lost, nothing logged twice
            steps = sorted(m.step for m in client.get_metric_history(run_id, key))
            assert steps == list(range(EPOCHS)), (name, key, steps)
        assert run.data.metrics["epochs_completed"] == EPOCHS, name
        (inp,) = run.inputs.dataset_inputs
        assert inp.dataset.name == "shapes", name
        paths = {a.path for a in client.list_artifacts(run_id, "training-output/weights")}
        assert "training-output/weights/best.pt" in paths, (name, paths)
        assert [a.path for a in client.list_artifacts(run_id, "logs")] == ["logs/train.log"], name
        assert run.data.params["epochs"] == str(EPOCHS), name

    versions = client.search_model_versions(f"name='{MODEL}'")
    assert sorted(int(v.version) for v in versions) == list(range(1, RUNS + 1))
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in runs)
    for run in runs:
        [version] = [v.version for v in versions if v.run_id == run.info.run_id]
        assert run.data.tags["registered_model"] == f"{MODEL}/{version}", run.info.run_name
    assert client.get_model_version_by_alias(MODEL, "champion").run_id in {r.info.run_id for r in runs}


def test_four_trainers_at_once_on_sqlite(mlflow_server_factory, small_dataset: Path, tmp_path: Path) -> None:
    server: MlflowServer = mlflow_server_factory(workers=chart_server_workers())
    started = time.monotonic()
    results = train_at_once(server.url, small_dataset, tmp_path)
    print(f"{RUNS} trainings on SQLite in {time.monotonic() - started:.0f} s")
    assert_all_recorded(MlflowClient(server.url), results)


def test_four_trainers_at_once_on_postgres_and_s3(
    mlflow_server_factory, postgres: Postgres, s3: S3, small_dataset: Path, tmp_path: Path
) -> None:
    bucket = s3.create_bucket("mlflow-parallel")
    server: MlflowServer = mlflow_server_factory(postgres.create_database("mlflow_parallel"), f"{bucket}/artifacts",
                                                 env=s3.env, workers=chart_server_workers())  # fmt: skip
    started = time.monotonic()
    results = train_at_once(server.url, small_dataset, tmp_path)
    print(f"{RUNS} trainings on PostgreSQL + S3 in {time.monotonic() - started:.0f} s")
    client = MlflowClient(server.url)
    assert_all_recorded(client, results)
    keys = s3.keys("mlflow-parallel")
    for run in client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id]):
        assert any(k.endswith(f"{run.info.run_id}/artifacts/training-output/weights/best.pt") for k in keys), run.info.run_name
