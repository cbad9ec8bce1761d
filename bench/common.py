"""Shared pieces of the benchmarks: the test harness's real servers, the chart's rendered server flags, tables."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # harness.py: real servers on 127.0.0.1, stopped by PID

import yaml  # noqa: E402
from trainer.tracking import first_line  # noqa: E402
import harness  # noqa: E402
from harness import BIN, MlflowServer, Proc, free_port, http_ok, wait_until  # noqa: E402,F401

WORK = ROOT / ".work" / "bench"
HELM = ROOT / ".tools" / "bin" / "helm"
CHART = ROOT / "charts" / "mlflow-stack"


def _server_context(name: str):  # noqa: ANN202
    """The harness's throwaway PostgreSQL / SeaweedFS as a context manager (its pytest fixture, unwrapped)."""
    direct = getattr(harness, f"start_{name}", None)
    return direct or contextlib.contextmanager(getattr(harness, name).__wrapped__)


start_postgres = _server_context("postgres")
_start_s3 = _server_context("s3")
SEAWEED_FIXED_PORTS = (8888, 9333, 23646)  # `weed mini` always opens these: one instance per machine


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def start_s3(wait: float = 900):  # noqa: ANN201
    """SeaweedFS, once its fixed ports are free (the test suite may be using them): waits, then retries a failed start."""
    deadline = time.monotonic() + wait
    while True:
        busy = [p for p in SEAWEED_FIXED_PORTS if _port_busy(p)]
        if not busy:
            started = False
            try:
                with _start_s3() as s3:
                    started = True
                    yield s3
                return
            except RuntimeError as exc:  # lost the race for a port: wait_until reports the early exit
                if started or "seaweed" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                print(f"SeaweedFS did not start ({first_line(exc, 100)}); retrying", flush=True)
        elif time.monotonic() > deadline:
            raise RuntimeError(f"ports {busy} stayed busy (another SeaweedFS, e.g. the test suite's)")
        else:
            print(f"ports {busy} busy (another SeaweedFS?): waiting", flush=True)
        time.sleep(10)


def rendered_server(*helm_args: str) -> dict:
    """The tracking-server Deployment exactly as `helm template` renders it (chart defaults unless overridden)."""
    out = subprocess.run(
        [str(HELM), "template", "bench", str(CHART), "-n", "bench", "--show-only", "templates/server/deployment.yaml",
         *helm_args], check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return yaml.safe_load(out)


def chart_server_flags(deployment: dict) -> list[str]:
    """`mlflow server` flags of the chart, without the ones a local run must replace (host, port, stores)."""
    [server] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "mlflow"]
    assert server["command"] == ["mlflow", "server"], server["command"]
    local = ("--host", "--port", "--backend-store-uri", "--artifacts-destination", "--allowed-hosts")
    return [a for a in server["args"] if not a.startswith(local)]


def chart_server_env(deployment: dict) -> dict[str, str]:
    """The server container's literal env values (HOME excepted); secrets (S3 credentials) come from the caller."""
    [server] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "mlflow"]
    return {e["name"]: str(e["value"]) for e in server.get("env", []) if "value" in e and e["name"] != "HOME"}


def start_server(flags: list[str], backend_uri: str, artifacts: str, workdir: Path, env: dict[str, str] | None = None,
                 timeout: float = 180) -> tuple[Proc, str]:  # fmt: skip
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri",
            backend_uri, "--artifacts-destination", artifacts, *flags]  # fmt: skip
    proc = Proc(argv, workdir / f"server-{port}.log", env or {})
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(url + "/health"), timeout, "mlflow server", proc)
    return proc, url


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def table(title: str, header: list[str], rows: list[list[object]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    return text


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")))
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB RAM, Python {platform.python_version()}, "
            f"load average at start {load[0]:.2f}")  # fmt: skip


def write_section(name: str, text: str) -> None:
    """Each benchmark leaves its table for bench/run.sh to gather into RESULTS.md."""
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / f"{name}.md").write_text(text)
