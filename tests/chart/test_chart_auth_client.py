"""The chart's non-admin client user against a real `mlflow server` set up as rendered (issue 34 item 7).

`helm template` of the defaults (SQLite, basic auth, a registered model): the server Deployment's init containers run
as rendered (db-upgrade, then auth-admin with the Secrets the credentials hook would create), then `mlflow server`
with the rendered args and env. The admin then creates an experiment named like the training's (as an install whose
clients logged in as the admin left it) and another one, and auth-admin runs again (as at the next server start).
Then, logged in as the training pod is (MLFLOW_TRACKING_USERNAME from its ConfigMap, the password from its Secret), the
client user:
- is not the admin, and cannot create users (admin-only: 403);
- creates an experiment and a run, logs a param and an artifact through the server's proxy and reads it back;
- registers a model version and sets an alias (what the trainer's promotion does);
- logs a run into the pre-existing training experiment (auth-admin's grant), but not into another user's experiment
  (defaultPermission READ: 403);
- `mlflow gc` (its artifacts deleted through the proxy) removes a deleted run of its own, and stops with 403 at a
  deleted run of another user's experiment (what docs/chart.md says it refuses);
- cannot read /metrics (MLflow answers it to admins only: the ServiceMonitor keeps the admin login);
and the rendered `helm test` script passes with its own (client) login.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from test_chart_metadata import CHART, helm, run_rendered

from harness import BASE_ENV, BIN, free_port, http_ok, wait_until


MODEL = "detector"


RR = run_rendered()


def call(method: str, url: str, auth: tuple[str, str], body: dict | None = None) -> int:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", "Authorization": "Basic "
                                          + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


class Rendered:
    """The chart's server, started from the render; logins of the admin and of the training pod."""

    def __init__(self, tmp: Path) -> None:
        self.work = tmp
        text = helm(tmp, "template", "t", str(CHART), "-n", "ml", "--set", f"training.params.registerModel={MODEL}",
                    "--set", "server.metrics.enabled=true")
        self.docs = [d for d in yaml.safe_load_all(text) if d]
        self.docs += RR.generated_secrets(self.docs)  # the Secrets the credentials hook would create
        self.data = tmp / "data"
        self.data.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        pod = RR.find(self.docs, "Deployment", "server")["spec"]["template"]["spec"]
        self.inits = {c["name"]: c for c in pod["initContainers"]}
        self.main = pod["containers"][0]
        self.server: subprocess.Popen | None = None

    def rewrite(self, text: str) -> str:
        return text.replace("/mlflow-data", str(self.data))

    def env(self, container: dict) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        env.update(BASE_ENV, **RR.resolve_env(container, self.docs, self.rewrite))
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `python`, `mlflow` of the image: .venv's
        if "MLFLOW_AUTH_CONFIG_PATH" in env:  # the ConfigMap the chart mounts at /etc/mlflow-auth
            [cm] = [d for d in self.docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "t-mlflow-stack-auth"]
            ini = self.work / "basic_auth.ini"
            ini.write_text(self.rewrite(cm["data"]["basic_auth.ini"]))
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        return env

    def run_init(self, name: str) -> str:
        c = self.inits[name]
        out = subprocess.run([*c["command"], *map(self.rewrite, c["args"])], env=self.env(c), capture_output=True,
                             text=True, timeout=600)  # fmt: skip
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return out.stdout

    def start(self) -> None:
        args = RR.local_server_args(self.main["args"], self.port, self.work, self.rewrite)
        log = (self.work / "server.log").open("w")
        argv = [str(BIN / "mlflow"), *self.main["command"][1:], *args]
        self.server = subprocess.Popen(argv, env=self.env(self.main), cwd=self.work, stdout=log,
                                       stderr=subprocess.STDOUT)  # fmt: skip

        def up() -> bool:
            if self.server.poll() is not None:
                tail = (self.work / "server.log").read_text()[-3000:]
                raise SystemExit(f"mlflow server exited {self.server.returncode}: {tail}")
            return http_ok(f"{self.url}/health")

        wait_until(up, 600, "the rendered server")

    def stop(self) -> None:
        if self.server:
            self.server.terminate()
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.server.kill()

    def admin(self) -> tuple[str, str]:
        env = self.env(self.main)
        return env["MLFLOW_AUTH_ADMIN_USERNAME"], env["MLFLOW_AUTH_ADMIN_PASSWORD"]

    def training_login(self) -> tuple[str, str]:
        job = RR.find(self.docs, "Job", "training")
        env = RR.resolve_env(job["spec"]["template"]["spec"]["containers"][0], self.docs, self.rewrite)
        return env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]

    def training_experiment(self) -> str:
        job = RR.find(self.docs, "Job", "training")
        [name] = [e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
                  if e["name"] == "MLFLOW_EXPERIMENT_NAME"]  # fmt: skip
        return name


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rendered]:
    r = Rendered(tmp_path_factory.mktemp("auth-client"))
    r.run_init("db-upgrade")
    r.auth_log = r.run_init("auth-admin")
    r.start()
    try:
        # the training's experiment and someone else's, created by the admin (as an install whose clients logged in as
        # the admin left them); then auth-admin runs again, as at the server's next start (it only writes the database)
        admin = MlflowClient(r.url)
        with pytest.MonkeyPatch.context() as mp:
            as_user(mp, r.admin())
            admin.create_experiment(r.training_experiment())
            admin.create_experiment("someone-elses")
        r.grant_log = r.run_init("auth-admin")
        yield r
    finally:
        r.stop()


def as_user(monkeypatch: pytest.MonkeyPatch, login: tuple[str, str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", login[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", login[1])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def test_the_training_logs_in_as_a_non_admin_client_user(rendered: Rendered) -> None:
    user, password = rendered.training_login()
    admin, admin_password = rendered.admin()
    assert user != admin and password != admin_password, "the training pod logs in as the admin"
    assert f"client user {user} (not admin): created" in rendered.auth_log, rendered.auth_log
    users = f"{rendered.url}/api/2.0/mlflow/users"
    assert call("GET", f"{users}/get?username={user}", (admin, admin_password)) == 200
    # admin-only: creating users, making itself admin
    intruder = {"username": "intruder", "password": "intruder-password-1"}
    assert call("POST", f"{users}/create", (user, password), intruder) == 403
    assert call("PATCH", f"{users}/update-admin", (user, password), {"username": user, "is_admin": True}) == 403
    assert call("POST", f"{users}/create", (admin, admin_password),
                {"username": "someone", "password": "someone-password-1"}) == 200  # the admin may: the check works


def test_the_client_user_tracks_logs_artifacts_registers_and_promotes(
    rendered: Rendered, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    as_user(monkeypatch, rendered.training_login())
    client = MlflowClient(rendered.url)
    experiment = client.create_experiment(f"client-{int(time.time() * 1000)}")
    run = client.create_run(experiment)
    run_id = run.info.run_id
    client.log_param(run_id, "probe", "client")
    client.log_text(run_id, "weights", "model/MLmodel")
    local = client.download_artifacts(run_id, "model/MLmodel", str(tmp_path))
    assert Path(local).read_text() == "weights"
    client.set_terminated(run_id)
    client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run_id=run_id)
    client.set_registered_model_alias(MODEL, "champion", version.version)
    assert client.get_model_version_by_alias(MODEL, "champion").run_id == run_id


def test_the_follower_as_the_client_user_waits_for_a_model_that_does_not_exist_yet(
    rendered: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's auth answers a non-admin's alias lookup on a missing model with 403, not 404: the follower (serving
    installed before the first training) must still say it waits; so it does for a model an admin created."""
    from trainer.serving.follow_alias import resolve

    as_user(monkeypatch, rendered.training_login())
    client = MlflowClient(rendered.url)
    assert resolve(client, "not-trained-yet", "champion") == (
        "", "no version of registered model 'not-trained-yet' has the alias 'champion' yet")
    as_user(monkeypatch, rendered.admin())
    theirs = f"admins-{int(time.time() * 1000)}"
    MlflowClient(rendered.url).create_registered_model(theirs)
    as_user(monkeypatch, rendered.training_login())
    assert resolve(client, theirs, "champion")[0] == ""  # READ by default: no version yet, no error


def test_the_client_user_writes_to_the_chart_experiment_but_not_to_others(
    rendered: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_user(monkeypatch, rendered.training_login())
    client = MlflowClient(rendered.url)
    training = client.get_experiment_by_name(rendered.training_experiment())
    assert f"MANAGE on experiment {training.name!r}" in rendered.grant_log, rendered.grant_log
    run = client.create_run(training.experiment_id)  # auth-admin's grant: MANAGE on the chart's experiment
    client.set_terminated(run.info.run_id)
    other = client.get_experiment_by_name("someone-elses")  # defaultPermission READ: visible...
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.create_run(other.experiment_id)  # ...but not writable


def test_helm_test_passes_with_its_client_login(rendered: Rendered) -> None:
    [pod] = [d for d in rendered.docs if d["kind"] == "Pod" and d["spec"]["containers"][0]["name"] == "tracking"]
    c = pod["spec"]["containers"][0]
    env = rendered.env(c)
    assert env["MLFLOW_TRACKING_USERNAME"] == rendered.training_login()[0]
    env["MLFLOW_TRACKING_URI"] = rendered.url
    out = subprocess.run([sys.executable, "-c", c["args"][0]], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def gc(rendered: Rendered, login: tuple[str, str], run_id: str) -> subprocess.CompletedProcess:
    """`mlflow gc` of one run as the client user (the chart's CronJob needs PostgreSQL; gc itself works on SQLite)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(BASE_ENV, MLFLOW_TRACKING_USERNAME=login[0], MLFLOW_TRACKING_PASSWORD=login[1],
               MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")  # fmt: skip
    return subprocess.run([str(BIN / "mlflow"), "gc", f"--backend-store-uri=sqlite:///{rendered.data / 'mlflow.db'}",
                           f"--tracking-uri={rendered.url}", f"--run-ids={run_id}"],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


def test_gc_as_the_client_user_removes_its_own_runs_only(rendered: Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    login = rendered.training_login()
    as_user(monkeypatch, login)
    client = MlflowClient(rendered.url)
    mine = client.create_run(client.create_experiment(f"gc-{int(time.time() * 1000)}")).info.run_id
    client.log_text(mine, "weights", "weights/best.txt")
    client.delete_run(mine)
    out = gc(rendered, login, mine)
    assert out.returncode == 0 and f"Run with ID {mine} has been permanently deleted" in out.stdout, out.stderr[-2000:]

    as_user(monkeypatch, rendered.admin())
    admin = MlflowClient(rendered.url)
    theirs = admin.create_run(admin.get_experiment_by_name("someone-elses").experiment_id).info.run_id
    admin.log_text(theirs, "weights", "weights/best.txt")
    admin.delete_run(theirs)
    out = gc(rendered, login, theirs)
    assert out.returncode != 0 and "403" in out.stderr, out.stdout[-1000:] + out.stderr[-2000:]
    assert admin.get_run(theirs).info.lifecycle_stage == "deleted"  # kept (restorable), artifacts too


def test_metrics_answer_the_admin_only(rendered: Rendered) -> None:
    assert call("GET", f"{rendered.url}/metrics", rendered.training_login()) == 403
    assert call("GET", f"{rendered.url}/metrics", rendered.admin()) == 200
