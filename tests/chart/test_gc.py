"""The chart's gc CronJob (templates/gc/cronjob.yaml) as rendered, against a real MLflow server on PostgreSQL with its
artifacts proxied to real S3 (SeaweedFS): `mlflow gc` must remove deleted runs and experiments from the database and
their objects from the bucket, leave everything else alone, and keep what was deleted less than `gc.olderThan` ago.

The container's command, args and env come from `helm template` (the Secrets from the same render, as the smoke tests
resolve them); only the Service DNS name is pointed at the local server. The gc process gets no S3 keys: it deletes
the artifacts through the server's artifact proxy, as in the cluster.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from mlflow.tracking import MlflowClient

from harness import BASE_ENV, BIN, REPO, S3, MlflowServer, Postgres, http_json

HELM = REPO / ".tools" / "bin" / "helm"
CHART = REPO / "charts" / "mlflow-stack"
SERVICE_HOST = "mlflow-service.ml.svc.cluster.local"  # the chart's default server.service.name in namespace ml


def _smoke_module():  # noqa: ANN202 - charts/mlflow-stack/tests/smoke/run_rendered.py: resolve_env, as the smokes use it
    spec = importlib.util.spec_from_file_location("run_rendered", CHART / "tests" / "smoke" / "run_rendered.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Stack:
    server: MlflowServer
    postgres: Postgres
    database: str
    s3: S3
    bucket: str

    def run_keys(self, run_id: str) -> list[str]:
        return [k for k in self.s3.keys(self.bucket) if f"/{run_id}/" in k]


@pytest.fixture(scope="module")
def stack(postgres: Postgres, s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One server for both tests (a start costs ~20 s on 2 busy cores); each test checks only its own runs."""
    suffix = uuid.uuid4().hex[:8]
    bucket, database = f"gc-{suffix}", f"gc_{suffix}"
    s3.create_bucket(bucket)
    workdir = tmp_path_factory.mktemp("gc-server")
    server = MlflowServer(postgres.create_database(database), f"s3://{bucket}", workdir, s3.env).start()
    yield Stack(server, postgres, database, s3, bucket)
    server.stop()


def rendered_gc(stack: Stack, tmp_path: Path, older_than: str) -> tuple[list[str], dict[str, str]]:
    """argv and env of the CronJob's container, rendered for the test's PostgreSQL and server."""
    assert os.access(HELM, os.X_OK), f"{HELM} is missing: run `make setup`"
    homes = {f"HELM_{k}_HOME": str(tmp_path / "helm" / k.lower()) for k in ("CONFIG", "CACHE", "DATA")}
    pg = stack.postgres
    sets = {"gc.enabled": "true", "backend.type": "postgresql",
            "backend.postgresql.bundled": "false", "backend.postgresql.host": pg.host,
            "backend.postgresql.port": str(pg.port), "backend.postgresql.database": stack.database,
            "backend.postgresql.username": pg.user, "backend.postgresql.password": pg.password,
            "server.service.port": str(stack.server.port), "server.auth.enabled": "false"}  # fmt: skip
    out = subprocess.run([str(HELM), "template", "t", str(CHART), "-n", "ml", "-s", "templates/gc/cronjob.yaml",
                          "-s", "templates/backend/postgresql-secret.yaml",
                          *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
                          "--set-string", f"gc.olderThan={older_than}"],
                         env={**os.environ, **homes}, capture_output=True, text=True, check=True).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(out) if d]
    [cronjob] = [d for d in docs if d["kind"] == "CronJob"]
    [container] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]

    def rewrite(text: str) -> str:
        return text.replace(SERVICE_HOST, "127.0.0.1")

    argv = [shutil.which(container["command"][0], path=str(BIN)), *container["command"][1:],
            *map(rewrite, container["args"])]  # fmt: skip
    assert not [a for a in argv if "svc.cluster.local" in a], argv
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "PG"))}
    env.update(BASE_ENV, **_smoke_module().resolve_env(container, docs, rewrite))
    return argv, env


def run_gc(stack: Stack, tmp_path: Path, older_than: str) -> str:
    argv, env = rendered_gc(stack, tmp_path, older_than)
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def run_with_artifact(client: MlflowClient, experiment_id: str) -> str:
    run_id = client.create_run(experiment_id).info.run_id
    client.log_text(run_id, "weights", "weights/best.txt")
    client.log_text(run_id, "metrics", "results.csv")
    client.set_terminated(run_id)
    return run_id


def run_status(stack: Stack, run_id: str) -> int:
    return http_json("GET", f"{stack.server.url}/api/2.0/mlflow/runs/get?run_id={run_id}")[0]


def test_gc_removes_deleted_runs_and_experiments_with_their_objects(stack: Stack, tmp_path: Path) -> None:
    client = MlflowClient(stack.server.url)
    experiment = client.create_experiment(f"kept-{uuid.uuid4().hex[:8]}")
    doomed, kept = run_with_artifact(client, experiment), run_with_artifact(client, experiment)
    gone_experiment = client.create_experiment(f"deleted-{uuid.uuid4().hex[:8]}")
    in_gone_experiment = run_with_artifact(client, gone_experiment)
    for run_id in (doomed, kept, in_gone_experiment):
        assert len(stack.run_keys(run_id)) == 2, stack.s3.keys(stack.bucket)
    kept_keys = stack.run_keys(kept)
    client.delete_run(doomed)
    client.delete_experiment(gone_experiment)

    out = run_gc(stack, tmp_path, older_than="")

    assert f"Run with ID {doomed} has been permanently deleted." in out, out
    assert run_status(stack, doomed) == 404
    assert stack.run_keys(doomed) == []
    assert run_status(stack, in_gone_experiment) == 404
    assert stack.run_keys(in_gone_experiment) == []
    assert http_json("GET", f"{stack.server.url}/api/2.0/mlflow/experiments/get?experiment_id={gone_experiment}")[0] == 404
    assert run_status(stack, kept) == 200
    assert client.get_run(kept).info.lifecycle_stage == "active"
    assert stack.run_keys(kept) == kept_keys
    assert client.download_artifacts(kept, "weights/best.txt", str(tmp_path)) and client.list_artifacts(kept, "weights")


def test_gc_keeps_a_run_deleted_less_than_older_than_ago(stack: Stack, tmp_path: Path) -> None:
    client = MlflowClient(stack.server.url)
    experiment = client.create_experiment(f"fresh-{uuid.uuid4().hex[:8]}")
    fresh = run_with_artifact(client, experiment)
    keys = stack.run_keys(fresh)
    client.delete_run(fresh)

    out = run_gc(stack, tmp_path, older_than="1d")

    assert fresh not in out, out
    assert client.get_run(fresh).info.lifecycle_stage == "deleted"
    assert stack.run_keys(fresh) == keys and len(keys) == 2
