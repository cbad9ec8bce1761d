"""The credentials hook (templates/credentials, files/create-secrets.py) against the real kube-apiserver.

The chart renders no generated credential: its pre-install/pre-upgrade hook creates the Secrets, with a create-only
ServiceAccount of its own. Here the rendered SA/Role/RoleBinding are applied and the rendered hook container runs as a
local process (rendered.py) with that ServiceAccount's token, the way the pod would (kwok runs no container):
- a missing RoleBinding (RBAC not effective yet) is retried, then reported in one line naming the Secret and the 403;
- every Secret of its list is created with its keys, lengths, labels and annotation; a second run keeps them as they
  are; a deleted one (and only it) is created again;
- the ServiceAccount may create Secrets and nothing else: no get, list, watch, update, patch or delete;
- nothing it prints holds a value.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from clusterlib import CHART, Helm, cluster_env, tool
from rendered import Manifest, container_process
from test_serving_follower import can_i

pytestmark = [pytest.mark.cluster]

VENV_BIN = Path(sys.executable).parent
RELEASE = "cred"
HOOK = f"{RELEASE}-mlflow-stack-credentials"
ALNUM = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def render(tmp_path: Path, namespace: str) -> Manifest:
    helm = Helm("helm", tool("helm"), cluster_env(tmp_path / "kubeconfig-unused", tmp_path / "helm-home"))
    sets = ("training.enabled=false", "backend.type=postgresql", "server.auth.enabled=true", "objectStore.enabled=true")
    text = helm("template", RELEASE, CHART, "-n", namespace, *[a for s in sets for a in ("--set", s)]).stdout
    return Manifest([d for d in yaml.safe_load_all(text) if d], namespace)  # not parse(): no stand-ins for the hook's


def account_dir(cluster, ns: str, tmp_path: Path) -> tuple[Path, str, str]:
    """The hook ServiceAccount's token mount (token, ca.crt, namespace) and the API server's host and port."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    account = tmp_path / "serviceaccount"
    account.mkdir(exist_ok=True)
    (account / "token").write_text(cluster.kubectl("create", "token", HOOK, "-n", ns, "--duration=1h").stdout.strip())
    (account / "ca.crt").write_bytes(base64.b64decode(config["certificate-authority-data"]))
    (account / "namespace").write_text(ns)
    host, port = config["server"].removeprefix("https://").rsplit(":", 1)
    return account, host, port


def run_hook(m: Manifest, account: Path, host: str, port: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    job = m.one("Job", "-credentials")
    hook = container_process(m, job, "create-secrets", tmp_path / "work", VENV_BIN)
    assert hook.argv[1:2] == ["-c"] and "/var/run/secrets/kubernetes.io/serviceaccount" in hook.argv[2]
    full_env = {**hook.env, "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
                "SERVICE_ACCOUNT_DIR": str(account), **env}  # fmt: skip
    return subprocess.run(hook.argv, env=full_env, cwd=hook.cwd, capture_output=True, text=True, timeout=120)


def secret_values(cluster, ns: str, name: str) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in cluster.get(f"secret/{name}", "-n", ns)["data"].items()}


def test_hook_creates_missing_secrets_keeps_existing_ones_and_may_only_create(cluster, namespace, tmp_path):
    ns = ["-n", namespace]
    m = render(tmp_path, namespace)
    job = m.one("Job", "-credentials")
    [env] = [e for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "SECRETS"]
    specs = json.loads(env["value"])
    labels = json.loads(next(e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
                             if e["name"] == "LABELS"))  # fmt: skip
    assert [s["name"] for s in specs] == [f"{RELEASE}-mlflow-stack-postgresql", f"{RELEASE}-mlflow-stack-auth",
                                          f"{RELEASE}-mlflow-stack-auth-client",
                                          f"{RELEASE}-mlflow-stack-objectstore-keys"]  # fmt: skip
    assert not [d for d in m.docs if d["kind"] == "Secret"], "a generated Secret is rendered"
    rbac = [d for d in m.docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding") and d["metadata"]["name"] == HOOK]
    assert len(rbac) == 3

    # the ServiceAccount alone: the POST is refused (403) and retried until TIMEOUT, then one line says so
    cluster.apply([d for d in rbac if d["kind"] == "ServiceAccount"], *ns)
    account, host, port = account_dir(cluster, namespace, tmp_path)
    refused = run_hook(m, account, host, port, tmp_path, TIMEOUT="3")
    assert refused.returncode == 1, refused
    [line] = refused.stderr.strip().splitlines()
    assert f"Secret {specs[0]['name']} not created" in line and "HTTP 403" in line, line
    assert "retrying every 2s" in refused.stdout and "Traceback" not in refused.stderr

    cluster.apply([d for d in rbac if d["kind"] != "ServiceAccount"], *ns)
    first = run_hook(m, account, host, port, tmp_path)
    assert first.returncode == 0, first
    values = {}
    for spec in specs:
        name = spec["name"]
        assert f"created Secret {name} (keys: {', '.join(sorted(spec['keys']))})" in first.stdout
        secret = cluster.get(f"secret/{name}", *ns)
        assert secret["type"] == "Opaque"
        assert secret["metadata"]["labels"] == labels and "app.kubernetes.io/managed-by" not in labels
        assert secret["metadata"]["annotations"]["mlflow-stack.io/generated-by"] == HOOK
        values[name] = secret_values(cluster, namespace, name)
        assert {k: len(v) for k, v in values[name].items()} == spec["keys"]
        assert all(set(v) <= ALNUM for v in values[name].values())
    assert len({v for vs in values.values() for v in vs.values()}) == sum(len(s["keys"]) for s in specs), "repeated"

    # run again (the next `helm upgrade`): every Secret kept as it is
    second = run_hook(m, account, host, port, tmp_path)
    assert second.returncode == 0, second
    for spec in specs:
        assert f"Secret {spec['name']} exists: kept" in second.stdout
        assert secret_values(cluster, namespace, spec["name"]) == values[spec["name"]]

    # a deleted Secret (to regenerate it): only it is created again, with new values
    deleted = specs[1]["name"]
    cluster.kubectl("delete", "secret", deleted, *ns)
    third = run_hook(m, account, host, port, tmp_path)
    assert third.returncode == 0, third
    created = [line for line in third.stdout.splitlines() if "created Secret" in line]
    assert len(created) == 1 and f"created Secret {deleted} (keys: " in created[0], third.stdout
    renewed = secret_values(cluster, namespace, deleted)
    assert renewed.keys() == values[deleted].keys() and renewed != values[deleted]
    for spec in specs:
        if spec["name"] != deleted:
            assert secret_values(cluster, namespace, spec["name"]) == values[spec["name"]]

    # create-only: it can add a Secret, never read, change or delete one
    assert can_i(account, host, port, tmp_path, "create", "secrets", *ns)
    for verb in ("get", "list", "watch", "update", "patch", "delete"):
        assert not can_i(account, host, port, tmp_path, verb, "secrets", *ns), verb
        assert not can_i(account, host, port, tmp_path, verb, f"secret/{deleted}", *ns), verb
    assert not can_i(account, host, port, tmp_path, "create", "configmaps", *ns)
    assert not can_i(account, host, port, tmp_path, "create", "secrets", "-n", "default")

    # nothing it printed holds a value
    output = "".join(p.stdout + p.stderr for p in (refused, first, second, third))
    for value in [v for vs in values.values() for v in vs.values()] + list(renewed.values()):
        assert value not in output
