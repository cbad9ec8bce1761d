"""Helpers for the tests against the throwaway control plane (ci/cluster); fixtures are in conftest.py.

A module of its own (not conftest.py) so test modules can import it: tests/conftest.py is also named `conftest`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".tools" / "bin"
CLUSTER = ROOT / "ci" / "cluster"
# MLFLOW_STACK_CHART: test another copy of the chart (e.g. an unpacked release tarball).
CHART = Path(os.environ.get("MLFLOW_STACK_CHART", ROOT / "charts" / "mlflow-stack")).resolve()
HELMS = ("helm", "helm3")  # Helm 4 and Helm 3, both built by `make setup`


def versions() -> dict[str, str]:
    """ci/versions.env as a dict (the one place for non-Python tool versions)."""
    out = {}
    for line in (ROOT / "ci" / "versions.env").read_text().splitlines():
        m = re.match(r"^([A-Z0-9_]+)=(\S*)", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def tool(name: str) -> str:
    path = BIN / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `make setup` (ci/install-tools.sh builds it)", pytrace=False)
    return str(path)


def run(cmd, *, env=None, check=True, timeout=300, input=None) -> subprocess.CompletedProcess:
    """Run a command, capture its output, and fail the test with both streams when it fails unexpectedly."""
    proc = subprocess.run(
        [str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=timeout, input=input, cwd=ROOT
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"command failed (rc={proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}",
            pytrace=False,
        )
    return proc


def pids_of(state: Path) -> dict[str, int]:
    """name -> pid of the processes `ci/cluster up` recorded in STATE/pids."""
    pids = {}
    path = state / "pids"
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pids[parts[0]] = int(parts[1])
    return pids


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def sockets(pid: int) -> list[tuple[str, str, str]]:
    """(protocol, local address, peer address) of every TCP/UDP socket of PID, from `ss` (it sees every process)."""
    out = []
    for proto, flag in (("tcp", "-Htanp"), ("udp", "-Huanp")):
        for line in run(["ss", flag]).stdout.splitlines():
            if f"pid={pid}," in line:
                cols = line.split()
                out.append((proto, cols[3].rsplit(":", 1)[0], cols[4].rsplit(":", 1)[0]))
    return out


def non_loopback_sockets(pids: dict[str, int]) -> list[str]:
    """Sockets of the cluster's processes bound to or talking to anything but 127.0.0.1 (should be none)."""
    bad = []
    for name, pid in pids.items():
        for proto, local, peer in sockets(pid):
            if local != "127.0.0.1" or peer not in ("127.0.0.1", "*", "0.0.0.0"):
                bad.append(f"{name} (pid {pid}) {proto} {local} -> {peer}")
    return bad


@dataclass
class Cluster:
    kubeconfig: Path
    state: Path
    env: dict[str, str] = field(default_factory=dict)

    def kubectl(self, *args, check=True, timeout=120, input=None) -> subprocess.CompletedProcess:
        return run([tool("kubectl"), "--kubeconfig", self.kubeconfig, *args], env=self.env, check=check,
                   timeout=timeout, input=input)

    def get(self, *args) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, docs: list[dict] | str, *extra) -> subprocess.CompletedProcess:
        text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs)
        return self.kubectl("apply", "-f", "-", *extra, input=text)

    def wait(self, *args, timeout=120) -> subprocess.CompletedProcess:
        return self.kubectl("wait", *args, f"--timeout={timeout}s", timeout=timeout + 30)

    def wait_until(self, what: str, predicate, timeout=120, interval=0.5):
        return wait_until(what, predicate, timeout, interval)


def wait_until(what: str, predicate, timeout: float = 120, interval: float = 0.5):
    """Poll predicate() until it returns something truthy; fail naming `what` (and the last value) otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})", pytrace=False)


def namespace_name(request) -> str:
    """A namespace name per test: readable, unique, valid (a test's own namespace in both cluster test suites)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"{slug}-{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]}"


def cluster_env(kubeconfig: Path, home: Path) -> dict[str, str]:
    """Environment for kubectl/helm: this cluster only, and Helm's own dirs isolated from the user's."""
    env = dict(os.environ)
    env.update(
        KUBECONFIG=str(kubeconfig),
        PATH=f"{BIN}:{env.get('PATH', '')}",
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_DATA_HOME=str(home / "data"),
    )
    # Loopback only: a proxy must never see this cluster's traffic.
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(var, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@dataclass
class Helm:
    name: str
    path: str
    env: dict[str, str]

    def __call__(self, *args, check=True, timeout=400) -> subprocess.CompletedProcess:
        return run([self.path, *args], env=self.env, check=check, timeout=timeout)
