"""The trainer's MLflow calls made by eight runs at the same instant (a barrier), on a real server with the chart's
worker count: experiment creation, run creation, the shared dataset input, model registration and alias.

Seconds instead of minutes (no training), so the race is hit many times: before the fix, `log_inputs` failed with
`UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest` for some of the runs.
"""

from __future__ import annotations

import threading
import time

import pytest
from mlflow.entities import Dataset, DatasetInput
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from harness import MlflowServer, chart_server_workers
from trainer import tracking
from trainer.bookkeeping import Bookkeeping

RUNS = 8
ROUNDS = 3  # a fresh experiment, dataset and model each: the first writers of each row are the ones that collide


def one_run(url: str, barrier: threading.Barrier, round_: int, results: dict[int, object], i: int) -> None:
    client = MlflowClient(url)
    book = Bookkeeping(30)
    deadline = time.monotonic() + 30
    barrier.wait()
    experiment_id = tracking.get_or_create_experiment(client, f"race-{round_}", deadline)
    barrier.wait()
    run_id = tracking.retry("creating the run", lambda: client.create_run(experiment_id).info.run_id, deadline,
                            transient=tracking.is_transient)  # fmt: skip
    dataset = DatasetInput(Dataset("shapes", f"digest{round_}", "local", '{"uri": "/data/shapes"}'))
    barrier.wait()
    book.attempt("logging the dataset input", lambda: client.log_inputs(run_id, datasets=[dataset]))
    barrier.wait()
    version = book.attempt("registering the model",
                           lambda: tracking.register_model(client, run_id, f"model-{round_}", "champion"))  # fmt: skip
    results[i] = (run_id, version, book.failed)


def test_eight_runs_write_the_same_rows_at_once(mlflow_server_factory) -> None:
    server: MlflowServer = mlflow_server_factory(workers=chart_server_workers())
    client = MlflowClient(server.url)
    for round_ in range(ROUNDS):
        barrier = threading.Barrier(RUNS, timeout=120)
        results: dict[int, object] = {}
        threads = [threading.Thread(target=one_run, args=(server.url, barrier, round_, results, i)) for i in range(RUNS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert len(results) == RUNS, f"round {round_}: runs that raised: {RUNS - len(results)} (see the log)"
        assert [r[2] for r in results.values()] == [[]] * RUNS, results
        run_ids = [r[0] for r in results.values()]
        for run_id in run_ids:
            (inp,) = client.get_run(run_id).inputs.dataset_inputs
            assert inp.dataset.digest == f"digest{round_}"
        versions = client.search_model_versions(f"name='model-{round_}'")
        assert sorted(int(v.version) for v in versions) == list(range(1, RUNS + 1))
        assert sorted(v.run_id for v in versions) == sorted(run_ids)
        assert sorted(str(r[1]) for r in results.values()) == sorted(str(v.version) for v in versions)
        assert client.get_model_version_by_alias(f"model-{round_}", "champion").run_id in run_ids
    exps = [e.name for e in client.search_experiments()]
    assert sorted(n for n in exps if n.startswith("race-")) == [f"race-{r}" for r in range(ROUNDS)]


def test_register_model_again_returns_the_same_version(sqlite_server: MlflowServer) -> None:
    """What a retry after a lost answer does: no second version for the same run."""
    client = MlflowClient(sqlite_server.url)
    run_id = client.create_run(client.create_experiment("again")).info.run_id
    first = tracking.register_model(client, run_id, "again", "")
    assert tracking.register_model(client, run_id, "again", "champion") == first
    assert [v.version for v in client.search_model_versions("name='again'")] == [first]


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionError("connection refused"), True),
        (RestException({"error_code": "BAD_REQUEST", "message": "(sqlite3.IntegrityError) UNIQUE constraint failed"}), True),
        (RestException({"error_code": "BAD_REQUEST", "message": "(psycopg2.errors.UniqueViolation) duplicate key value"}), True),
        (RestException({"error_code": "INTERNAL_ERROR", "message": "(sqlite3.OperationalError) database is locked"}), True),
        (MlflowException("API request to http://x failed with exception Max retries exceeded"), True),
        (RestException({"error_code": "PERMISSION_DENIED", "message": "Permission denied"}), False),
        (RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid value"}), False),
        (ValueError("bad"), False),
    ],
)
def test_is_transient(exc: Exception, transient: bool) -> None:
    assert tracking.is_transient(exc) is transient


def test_bookkeeping_failure_is_a_warning_at_once(caplog: pytest.LogCaptureFixture) -> None:
    """A refused call is not retried for the whole budget, and it does not raise: the training goes on."""
    book = Bookkeeping(600)

    def refused() -> None:
        raise RestException({"error_code": "PERMISSION_DENIED", "message": "Permission denied"})

    started = time.monotonic()
    assert book.attempt("logging the parameters", refused) is None
    assert time.monotonic() - started < 5
    assert book.failed == ["logging the parameters"]
    assert "logging the parameters failed after retries" in caplog.text
