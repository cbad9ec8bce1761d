"""The serving follower (`trainer follow-alias`) against a real API server and a real MLflow server: with the token of
the chart's follower ServiceAccount it pins the serving Deployment to the alias's version, records why it waits, keeps
the pin across `helm upgrade` (Helm 4 and Helm 3), and may touch nothing but that one Deployment.

kwok runs no container: the serving pods themselves (the rolling update, the scoring server) are tested on the real
node (tests/e2e) and in tests/model/test_model.py; the follower runs here as a local process with the pod's credentials.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import yaml
from clusterlib import CHART, tool, wait_until
from harness import MlflowServer, Proc, trainer_cmd
from mlflow.tracking import MlflowClient

RELEASE = "srv"
DEPLOYMENT = f"{RELEASE}-mlflow-stack-serving"
FOLLOWER = f"{RELEASE}-mlflow-stack-serving-follower"
MODEL = "yolo-det"
VERSION = "mlflow-stack.io/model-version"
STATUS = "mlflow-stack.io/status"


def annotations(cluster, ns: str) -> tuple[str, str]:
    """(version pinned in the pod template, the Deployment's status annotation)."""
    d = cluster.get(f"deployment/{DEPLOYMENT}", "-n", ns)
    template = d["spec"]["template"]["metadata"].get("annotations") or {}
    return template.get(VERSION, ""), (d["metadata"].get("annotations") or {}).get(STATUS, "")


def service_account_dir(cluster, ns: str, tmp_path: Path) -> tuple[Path, str, str]:
    """A folder laid out like the pod's token mount (token, ca.crt, namespace) for the follower's ServiceAccount, and the
    API server's host and port."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    account = tmp_path / "serviceaccount"
    account.mkdir()
    token = cluster.kubectl("create", "token", FOLLOWER, "-n", ns, "--duration=1h").stdout.strip()
    (account / "token").write_text(token)
    (account / "ca.crt").write_bytes(base64.b64decode(config["certificate-authority-data"]))
    (account / "namespace").write_text(ns)
    host, port = config["server"].removeprefix("https://").rsplit(":", 1)
    return account, host, port


def follower(server: MlflowServer, account: Path, host: str, port: str, log: Path) -> Proc:
    return Proc(trainer_cmd("follow-alias", "--model", MODEL, "--alias", "champion", "--deployment", DEPLOYMENT,
                            "--interval-seconds", "1", "--service-account-dir", str(account), "--mlflow-uri", server.url),
                log, env={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port})  # fmt: skip


def can_i(account: Path, host: str, port: str, tmp_path: Path, *what: str) -> bool:
    """`kubectl auth can-i` as the follower's ServiceAccount (its token only: an empty kubeconfig)."""
    empty = tmp_path / "empty-kubeconfig"
    empty.write_text("")
    proc = subprocess.run([tool("kubectl"), f"--server=https://{host}:{port}", f"--certificate-authority={account}/ca.crt",
                           f"--token={(account / 'token').read_text()}", "auth", "can-i", *what],
                          env={**os.environ, "KUBECONFIG": str(empty)}, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.stdout.strip() in ("yes", "no"), proc.stdout + proc.stderr
    return proc.stdout.strip() == "yes"


def register_version(client: MlflowClient) -> str:
    """A registered version (the follower only reads the registry; what the version holds does not matter here)."""
    if not client.search_registered_models(f"name = '{MODEL}'"):
        client.create_registered_model(MODEL)
    run = client.create_run(client.get_experiment_by_name("Default").experiment_id)
    client.set_terminated(run.info.run_id)
    return client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version


def test_follower_pins_the_alias_and_helm_upgrade_keeps_the_pin(cluster, helm, namespace, sqlite_server, tmp_path):
    ns = ["-n", namespace]
    values = ["--set", "training.enabled=false", "--set", "serving.enabled=true", "--set", f"serving.model={MODEL}"]
    helm("install", RELEASE, CHART, *ns, *values, "--wait", "--timeout", "3m")
    account, host, port = service_account_dir(cluster, namespace, tmp_path)

    # least privilege: get/patch of exactly the serving Deployment
    assert can_i(account, host, port, tmp_path, "patch", f"deployment/{DEPLOYMENT}", *ns)
    assert can_i(account, host, port, tmp_path, "get", f"deployment/{DEPLOYMENT}", *ns)
    assert not can_i(account, host, port, tmp_path, "patch", f"deployment/{RELEASE}-mlflow-stack", *ns)
    assert not can_i(account, host, port, tmp_path, "create", "deployments", *ns)
    assert not can_i(account, host, port, tmp_path, "get", "secrets", *ns)

    client = MlflowClient(sqlite_server.url)
    proc = follower(sqlite_server, account, host, port, tmp_path / "follower.log")
    try:
        # before any version: nothing pinned, and kubectl shows why in one line
        waiting = f"waiting: no version of registered model '{MODEL}' has the alias 'champion' yet"
        wait_until("the waiting status", lambda: annotations(cluster, namespace) == ("", waiting), 60)

        first = register_version(client)
        client.set_registered_model_alias(MODEL, "champion", first)
        serving = ("1", f"serving models:/{MODEL}/1 (@champion)")
        assert first == "1"
        wait_until("version 1 pinned", lambda: annotations(cluster, namespace) == serving, 60)
    finally:
        proc.stop()
    assert "@champion is version 1 (was none): rolling" in proc.tail()

    # helm upgrade with other serving values (a new pod template): the pin stays, the new value is in
    helm("upgrade", RELEASE, CHART, *ns, *values, "--set", "serving.workers=2", "--wait", "--timeout", "3m")
    d = cluster.get(f"deployment/{DEPLOYMENT}", *ns)
    assert "2" in d["spec"]["template"]["spec"]["containers"][0]["args"]
    assert annotations(cluster, namespace) == serving

    proc = follower(sqlite_server, account, host, port, tmp_path / "follower-2.log")
    try:
        client.set_registered_model_alias(MODEL, "champion", register_version(client))
        wait_until("version 2 pinned", lambda: annotations(cluster, namespace)[0] == "2", 60)
        client.set_registered_model_alias(MODEL, "champion", "1")  # rolled back the same way
        wait_until("back to version 1", lambda: annotations(cluster, namespace) == serving, 60)
        client.delete_registered_model_alias(MODEL, "champion")  # no alias: keep serving what was pinned
        wait_until("the kept pin", lambda: annotations(cluster, namespace) == (
            "1", f"serving models:/{MODEL}/1; no version of registered model '{MODEL}' has the alias 'champion' yet"), 60)
    finally:
        proc.stop()
    helm("uninstall", RELEASE, *ns, "--wait", "--timeout", "2m")
