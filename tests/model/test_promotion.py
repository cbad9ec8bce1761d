"""Champion/challenger promotion (trainer/model/promotion.py) on real MLflow servers, without trainings: runs with a logged
metric, versions registered from them, and promoters running in separate processes at the same instant."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from harness import MlflowServer, Postgres, chart_server_workers, trainer_cmd, trainer_env
from trainer import tracking
from trainer.model import promotion

METRIC = "best/metrics/mAP_0.5"
MODEL = "detector"

# One promoter, as `trainer train` runs it at the end of a training: register this run's version, then promote. It
# imports once, says "ready", then takes one job a line ([url, run_id, start, mode]) and answers one JSON line: a pool
# of them promotes round after round without paying the interpreter start-up per round.
PROMOTER = """
import json, sys, time
from mlflow.tracking import MlflowClient
from trainer import tracking
from trainer.model import promotion
print("ready", flush=True)
for line in sys.stdin:
    url, run_id, start, mode = json.loads(line)
    client = MlflowClient(url)
    time.sleep(max(0.0, start - time.time()))  # every promoter starts at the same instant
    version = tracking.retry("registering", lambda: tracking.register_model(client, run_id, "detector", ""),
                             time.monotonic() + 60, transient=tracking.is_transient)
    decision = promotion.promote(client, "detector", version, "champion", "best/metrics/mAP_0.5", mode,
                                 time.monotonic() + 120)
    print(json.dumps({"version": version, "promoted": decision.promoted, "message": decision.message}), flush=True)
"""
PROMOTERS = 5  # finishers per round


def run_with_metric(client: MlflowClient, experiment_id: str, value: float | None) -> str:
    run_id = client.create_run(experiment_id).info.run_id
    if value is not None:
        client.log_batch(run_id, metrics=[Metric(METRIC, value, int(time.time() * 1000), 0)])
    client.set_terminated(run_id)
    return run_id


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One server for the sequential tests (each uses its own model): a server start costs ~20 s on 2 busy cores."""
    workdir = tmp_path_factory.mktemp("promotion-server")
    started = MlflowServer(f"sqlite:///{workdir / 'mlflow.db'}", str(workdir / "artifacts"), workdir, {}).start()
    yield started
    started.stop()


def register_and_promote(client: MlflowClient, run_id: str, mode: str = "max", model: str = MODEL,
                         ) -> tuple[str, promotion.Decision]:  # fmt: skip
    version = tracking.register_model(client, run_id, model, "")
    return version, promotion.promote(client, model, version, "champion", METRIC, mode, time.monotonic() + 60)


def test_better_moves_the_alias_worse_leaves_it_with_the_reason(server: MlflowServer) -> None:
    client = MlflowClient(server.url)
    exp = client.create_experiment("promote")
    first, decision = register_and_promote(client, run_with_metric(client, exp, 0.40))
    assert decision.promoted  # no holder yet
    assert client.get_model_version_by_alias(MODEL, "champion").version == first

    better, decision = register_and_promote(client, run_with_metric(client, exp, 0.55))
    assert decision.promoted, decision
    assert client.get_model_version_by_alias(MODEL, "champion").version == better
    assert "0.55 beats version 1's 0.4" in client.get_model_version(MODEL, better).tags["promotion.champion"]

    worse, decision = register_and_promote(client, run_with_metric(client, exp, 0.50))
    assert not decision.promoted
    assert client.get_model_version_by_alias(MODEL, "champion").version == better
    why = client.get_model_version(MODEL, worse).tags["promotion.champion"]
    assert why == f"@champion stays on version {better}: {METRIC} 0.5 of version {worse} does not beat version {better}'s 0.55"

    missing, decision = register_and_promote(client, run_with_metric(client, exp, None))
    assert not decision.promoted  # a run without the metric never takes the alias
    assert client.get_model_version_by_alias(MODEL, "champion").version == better


def test_min_mode_prefers_lower_values(server: MlflowServer) -> None:
    client = MlflowClient(server.url)
    exp = client.create_experiment("promote-min")
    register_and_promote(client, run_with_metric(client, exp, 0.9), mode="min", model="by-loss")
    lower, decision = register_and_promote(client, run_with_metric(client, exp, 0.3), mode="min", model="by-loss")
    assert decision.promoted and client.get_model_version_by_alias("by-loss", "champion").version == lower
    _, decision = register_and_promote(client, run_with_metric(client, exp, 0.6), mode="min", model="by-loss")
    assert not decision.promoted and client.get_model_version_by_alias("by-loss", "champion").version == lower


def test_a_rollback_by_hand_is_not_undone_by_the_next_promotion(server: MlflowServer) -> None:
    """Only versions promoting at the same time compete: an earlier winner the team rolled back stays rolled back."""
    client = MlflowClient(server.url)
    exp = client.create_experiment("promote-rollback")
    old, _ = register_and_promote(client, run_with_metric(client, exp, 0.3), model="rolled-back")
    register_and_promote(client, run_with_metric(client, exp, 0.9), model="rolled-back")  # wins, then disappoints
    client.set_registered_model_alias("rolled-back", "champion", old)
    new, decision = register_and_promote(client, run_with_metric(client, exp, 0.5), model="rolled-back")
    assert decision.promoted
    assert client.get_model_version_by_alias("rolled-back", "champion").version == new


@pytest.fixture(scope="module")
def promote_at_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str, list[str]], list[dict]]]:
    """PROMOTERS promoter processes, started once for the module's rounds: each round gives each one a run, and all
    of them register and promote at the same instant."""
    logs = tmp_path_factory.mktemp("promoters")
    procs = [subprocess.Popen([sys.executable, "-c", PROMOTER], env=trainer_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=(logs / f"{i}.log").open("w"), text=True)
             for i in range(PROMOTERS)]  # fmt: skip

    def answer(i: int) -> str:
        line = procs[i].stdout.readline()  # the process either answers or ends (EOF): no wait without a bound
        assert line, f"promoter {i} ended (exit {procs[i].wait()}):\n{(logs / f'{i}.log').read_text()[-3000:]}"
        return line

    def at_once(url: str, run_ids: list[str]) -> list[dict]:
        assert len(run_ids) == PROMOTERS
        start = time.time() + 0.5  # every promoter is idle on its stdin: half a second reaches them all
        for proc, run_id in zip(procs, run_ids):
            proc.stdin.write(json.dumps([url, run_id, start, "max"]) + "\n")
            proc.stdin.flush()
        return [json.loads(answer(i)) for i in range(PROMOTERS)]

    try:
        assert [answer(i).strip() for i in range(PROMOTERS)] == ["ready"] * PROMOTERS
        yield at_once
    finally:
        for proc in procs:
            proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def assert_concurrent_promotions_end_on_the_best(url: str, promote_at_once: Callable[[str, list[str]], list[dict]]) -> None:
    client = MlflowClient(url)
    exp = client.create_experiment("promote-race")
    holder, _ = register_and_promote(client, run_with_metric(client, exp, 0.35))  # yesterday's champion
    # Rounds with the best one in different positions: who registers and writes last must not matter.
    for values in ([0.41, 0.62, 0.47, 0.58, 0.30], [0.71, 0.52, 0.66, 0.69, 0.10], [0.60, 0.61, 0.75, 0.74, 0.73]):
        run_ids = [run_with_metric(client, exp, v) for v in values]
        results = promote_at_once(url, run_ids)
        by_run = {v.run_id: v.version for v in client.search_model_versions(f"name='{MODEL}'")}
        best = by_run[run_ids[values.index(max(values))]]
        champion = client.get_model_version_by_alias(MODEL, "champion")
        assert champion.version == best, (values, results)
        # A promoter that finished before the best one was registered was promoted for a while: that is its record.
        assert [r["promoted"] for r in results if r["version"] == best] == [True], results
        for r in results:
            assert "promotion.champion" in client.get_model_version(MODEL, r["version"]).tags


def test_concurrent_finishers_leave_the_alias_on_the_best_sqlite(mlflow_server_factory, promote_at_once) -> None:
    server: MlflowServer = mlflow_server_factory(workers=chart_server_workers())
    assert_concurrent_promotions_end_on_the_best(server.url, promote_at_once)


def test_concurrent_finishers_leave_the_alias_on_the_best_postgres(mlflow_server_factory, postgres: Postgres,
                                                                   promote_at_once) -> None:  # fmt: skip
    server: MlflowServer = mlflow_server_factory(postgres.create_database("mlflow_promote"),
                                                 workers=chart_server_workers())  # fmt: skip
    assert_concurrent_promotions_end_on_the_best(server.url, promote_at_once)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--promote-alias", "champion"], "--promote-alias needs --register-model"),
     (["--register-model", "m", "--promote-alias", "champion", "--promote-mode", "median"],
      "--promote-mode must be one of max, min"),
     (["--register-model", "m", "--promote-alias", "latest"], "--promote-alias 'latest' is reserved by MLflow")],
    ids=["needs-register", "mode", "reserved"],
)  # fmt: skip
def test_bad_promotion_flags_exit_2_naming_the_flag(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(trainer_cmd("train", "--mlflow-uri", "http://127.0.0.1:9", "--weights", "", "--cfg",
                                        "yolov5n.yaml", *args), cwd=tmp_path, env=trainer_env(), capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(f"trainer: error: {message}"), result.stderr


def test_promotion_env_vars_are_the_flags_twins() -> None:
    from trainer.cli import build_parser
    from trainer.config import resolve

    env = {"MLFLOW_TRACKING_URI": "http://m:5000", "TRAINER_REGISTER_MODEL": "m", "TRAINER_PROMOTE_ALIAS": "champion",
           "TRAINER_PROMOTE_METRIC": "best/metrics/mAP_0.5_0.95", "TRAINER_PROMOTE_MODE": "min"}  # fmt: skip
    config = resolve(build_parser().parse_args(["train"]), env)
    assert (config.promote_alias, config.promote_metric, config.promote_mode) == (
        "champion", "best/metrics/mAP_0.5_0.95", "min")  # fmt: skip
    defaults = resolve(build_parser().parse_args(["train"]), {"MLFLOW_TRACKING_URI": "http://m:5000"})
    assert (defaults.promote_alias, defaults.promote_metric, defaults.promote_mode) == ("", METRIC, "max")
