"""Helpers for the end-to-end tests on the real node (ci/node); fixtures are in conftest.py.

Everything that talks to the cluster runs inside the node's network namespace through `ci/node exec`: kubectl and
helm reach the API server on its 127.0.0.1, and MLflow and S3 are reached at their Service IPs with the in-cluster
host name given to curl (`--resolve`), so no name is ever looked up outside the namespace.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cluster.clusterlib import run, wait_until  # noqa: F401  (the e2e tests use both)

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "ci" / "node"
IMAGES = ROOT / "ci" / "images.sh"
CHART = ROOT / "charts" / "mlflow-stack"
VENV_PY = ROOT / ".venv" / "bin" / "python"
NODE_NAME = "mlflow-stack-node"
STATE = Path(os.environ.get("NODE_STATE", ROOT / ".tools" / "node"))
# The trainer CI can build from PyPI alone is the CUDA one (ci/test.sh); torch falls back to the CPU on this node.
TORCH_VARIANT = "cuda"


def image_ref(name: str) -> str:
    env = {**os.environ, "TORCH_VARIANT": TORCH_VARIANT}
    return run(["bash", IMAGES, "ref", name], env=env).stdout.strip()


@dataclass
class Node:
    env: dict[str, str] = field(default_factory=dict)

    def exec(self, *args, check=True, timeout=300, input=None) -> subprocess.CompletedProcess:
        return run([NODE, "exec", *args], env=self.env, check=check, timeout=timeout, input=input)

    def kubectl(self, *args, check=True, timeout=300, input=None) -> subprocess.CompletedProcess:
        return self.exec("kubectl", *args, check=check, timeout=timeout, input=input)

    def get(self, *args) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def helm(self, helm: str, *args, check=True, timeout=600) -> subprocess.CompletedProcess:
        return self.exec(helm, *args, check=check, timeout=timeout)

    def secret(self, ns: str, name: str) -> dict[str, str]:
        data = self.get(f"secret/{name}", "-n", ns).get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def logs(self, ns: str, *what) -> str:
        return self.kubectl("logs", "-n", ns, *what, check=False).stdout

    def python(self, code: str, *args, timeout=120) -> str:
        """Run Python (the test venv: boto3, mlflow) inside the node's namespace; returns stdout."""
        return self.exec(VENV_PY, "-c", code, *args, timeout=timeout).stdout


@dataclass
class Release:
    """What `make release` pushed to the node's registry, and the keys it signed with (throwaway, per session)."""

    node: Node
    registry: dict[str, str]  # REGISTRY_HOST, REGISTRY_USERNAME, REGISTRY_PASSWORD, REGISTRY_CA (`ci/node registry`)
    repo: str  # REGISTRY_HOST/mlflow-stack: images at repo/mlflow-stack-*, the chart at oci://repo/charts
    version: str
    gpg_public: Path  # the keyring `helm --verify` checks the chart's .prov against
    cosign_public: Path

    @property
    def chart(self) -> str:
        return f"oci://{self.repo}/charts/mlflow-stack"

    def install_args(self) -> list[str]:
        """Chart reference + flags of every install/upgrade: the released version, its signature, the registry's CA."""
        return [self.chart, "--version", self.version, "--verify", "--keyring", str(self.gpg_public),
                "--ca-file", self.registry["REGISTRY_CA"]]  # fmt: skip

    def image(self, name: str) -> str:
        """repository@digest of a released image (server, trainer-cpu, trainer-cuda) as the packaged chart names it."""
        digest = (ROOT / ".work" / "images" / f"{name}.digest").read_text().strip()
        return f"{self.repo}/mlflow-stack-{name.split('-')[0]}@{digest}"

    def pull_secret(self, ns: str, name: str = "regcred", password: str | None = None) -> None:
        """A kubernetes.io/dockerconfigjson Secret for the registry (the real password unless one is given)."""
        r = self.registry
        self.node.kubectl("create", "secret", "docker-registry", name, "-n", ns, f"--docker-server={r['REGISTRY_HOST']}",
                          f"--docker-username={r['REGISTRY_USERNAME']}",
                          f"--docker-password={password or r['REGISTRY_PASSWORD']}")  # fmt: skip

    def cosign(self, *args, check=True) -> subprocess.CompletedProcess:
        """cosign inside the node's namespace, trusting the registry's CA, with helm's registry login (same format)."""
        config = Path(self.node.env["HELM_CONFIG_HOME"]) / "registry"
        return self.node.exec("env", f"SSL_CERT_FILE={self.registry['REGISTRY_CA']}", f"DOCKER_CONFIG={config}",
                              "cosign", *args, check=check)  # fmt: skip


def secrets_in_command_lines(node: Node, ns: str) -> tuple[list[str], list[str]]:
    """Every value (8 characters or more) of the namespace's Opaque Secrets found in the command line of a process on
    this machine (the node's containers are processes of it, in the same PID namespace): ['pid N (argv0): secret/key'],
    and every command line read (to show the scan saw the pods' processes)."""
    values = {}
    for secret in node.get("secrets", "-n", ns)["items"]:
        if secret.get("type") == "Opaque":
            for key, value in (secret.get("data") or {}).items():
                text = base64.b64decode(value).decode(errors="replace")
                if len(text) >= 8:
                    values[text] = f"{secret['metadata']['name']}/{key}"
    found, lines = [], []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        line = b" ".join(argv).decode(errors="replace")
        lines.append(line)
        found += [f"pid {proc.name} ({argv[0].decode(errors='replace')}): {where}" for v, where in values.items() if v in line]
    assert values, f"no Secret values in namespace {ns} to look for"
    return found, lines


def node_problems(node: Node) -> list[str]:
    """Why the node would not run a new pod: not Ready, a pressure condition, a taint (empty when it would)."""
    status = node.get(f"node/{NODE_NAME}")
    problems = [f"{c['type']}={c['status']}: {c.get('message', '')}" for c in status["status"].get("conditions", [])
                if (c["type"] == "Ready") != (c["status"] == "True")]  # fmt: skip
    problems += [f"taint {t['key']}:{t['effect']}" for t in status["spec"].get("taints", [])]
    return problems


def diagnose(node: Node, namespace: str | None) -> str:
    """The node and the namespace's pods at a failure, short enough for CI's log: node problems, pods with their
    waiting/terminated reasons, the last events, free disk, the kubelet's last errors."""
    out = []
    try:
        out.append(f"node: {'; '.join(node_problems(node)) or 'Ready, no pressure, no taints'}")
        if namespace:
            for pod in node.get("pods", "-n", namespace)["items"]:
                states = [f"{c['name']}:{k}({v.get('reason', '')})" for c in pod["status"].get("containerStatuses", [])
                          + pod["status"].get("initContainerStatuses", [])
                          for k, v in c.get("state", {}).items() if k != "running"]  # fmt: skip
                ready = [c["name"] for c in pod["status"].get("containerStatuses", []) if not c.get("ready")]
                out.append(f"pod {pod['metadata']['name']}: {pod['status'].get('phase')} not-ready={ready} {states}")
            events = node.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
            out += ["events (last 15):", *events.splitlines()[-15:]]
    except Exception as e:  # noqa: BLE001 - a broken API server is itself the finding
        out.append(f"cluster unreadable: {e}")
    out += [f"disk: {shutil.disk_usage(p).free >> 20} MiB free under {p}" for p in ("/tmp", Path.home())]
    rundir = STATE / "rundir"
    log = Path(rundir.read_text().strip()) / "log" / "kubelet.log" if rundir.exists() else None
    if log and log.exists():
        errors = [line[:300] for line in log.read_text(errors="replace").splitlines() if line.startswith(("E", "W"))]
        out += ["kubelet errors/warnings (last 10):", *errors[-10:]]
    return "\n".join(out)


@dataclass
class Mlflow:
    """The release's tracking server through its Service, as an in-cluster client sees it (REST API via curl)."""

    node: Node
    namespace: str
    service: str
    auth: tuple[str, str] | None = None

    @property
    def host(self) -> str:
        return f"{self.service}.{self.namespace}.svc.cluster.local"

    def call(self, method: str, path: str, body: dict | None = None, check: bool = True) -> dict:
        ip = self.node.get(f"service/{self.service}", "-n", self.namespace)["spec"]["clusterIP"]
        cmd = ["curl", "-sS", "--max-time", "20", "--resolve", f"{self.host}:5000:{ip}", "-X", method,
               "-H", "Content-Type: application/json", "-w", "\n%{http_code}"]  # fmt: skip
        # the login goes to curl as a config on stdin, never in its argv (the tests scan every process's command line)
        login = f'user = "{self.auth[0]}:{self.auth[1]}"\n' if self.auth else ""
        if body is not None:
            cmd += ["--data", json.dumps(body)]
        out = self.node.exec(*cmd, "-K", "-", f"http://{self.host}:5000/api/2.0/mlflow/{path}", check=check,
                             input=login).stdout
        text, _, code = out.rpartition("\n")
        if check and code != "200":
            pytest.fail(f"MLflow {method} {path}: HTTP {code}: {text[:2000]}", pytrace=False)
        return json.loads(text) if text.strip().startswith("{") else {"http_code": code, "text": text}

    def runs(self, experiment: str = "yolov5-coco128-demo") -> list[dict]:
        exp = self.call("GET", f"experiments/get-by-name?experiment_name={experiment}", check=False)
        if "experiment" not in exp:
            return []
        found = self.call("POST", "runs/search", {"experiment_ids": [exp["experiment"]["experiment_id"]],
                                                   "max_results": 100})  # fmt: skip
        return sorted(found.get("runs", []), key=lambda r: r["info"]["start_time"])

    def history(self, run_id: str, key: str) -> list[dict]:
        return self.call("GET", f"metrics/get-history?run_id={run_id}&metric_key={key}").get("metrics", [])

    def artifacts(self, run_id: str, path: str = "") -> list[str]:
        files = self.call("GET", f"artifacts/list?run_id={run_id}&path={path}").get("files", [])
        return [f["path"] for f in files]
