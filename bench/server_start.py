"""3. Server cold start: the chart's rendered commands to /health OK, vs the reference setup's pattern.

Chart: the db-upgrade init container's script, then `mlflow server` with the chart's flags (image has everything).
Reference: a fresh venv, `pip install mlflow boto3` at container start, then `mlflow server`. The wheels come from a
local wheelhouse (no network at run time), so the reference side is a lower bound: a real pod also downloads them.
Also: the chart's worker setting vs MLflow's default (start time and memory of the process tree).
Target: chart >= 10x faster.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import BIN, WORK, Proc, chart_server_flags, free_port, http_ok, median, rendered_server, table, verdict, wait_until, write_section

PAIRS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
WHEELHOUSE = WORK / "wheelhouse"
PHASES: dict[str, list[float]] = {}  # where each side's time goes


def serve(argv: list[str], log: Path, port: int) -> tuple[float, Proc]:
    start = time.perf_counter()
    proc = Proc(argv, log)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 600, "mlflow server", proc)
    return time.perf_counter() - start, proc


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (uvicorn workers)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,rss="], capture_output=True, text=True, check=True).stdout
    rows = [tuple(int(x) for x in line.split()) for line in out.splitlines()]
    pids, total = {pid}, 0
    for _ in range(5):
        pids |= {p for p, pp, _ in rows if pp in pids}
    total = sum(rss for p, _, rss in rows if p in pids)
    return total / 1024


def chart_side(work: Path, deployment: dict, flags: list[str], phases: dict | None = None) -> tuple[float, Proc, int]:
    phases = PHASES if phases is None else phases
    db = f"sqlite:///{work / 'mlflow.db'}"
    [init] = [c for c in deployment["spec"]["template"]["spec"]["initContainers"] if c["name"] == "db-upgrade"]
    start = time.perf_counter()
    subprocess.run(init["command"] + init["args"], check=True, env={"PATH": f"{BIN}:/usr/bin:/bin", "DB_URI": db,
                   "HOME": str(work)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    phases.setdefault("chart: db-upgrade init container", []).append(time.perf_counter() - start)
    port = free_port()
    took, proc = serve([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri",
                        db, "--artifacts-destination", str(work / "artifacts"), *flags], work / "server.log", port)  # fmt: skip
    phases.setdefault("chart: mlflow server to /health", []).append(took)
    return time.perf_counter() - start, proc, port


def reference_side(work: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    venv = time.perf_counter()
    subprocess.run([str(work / "venv/bin/pip"), "install", "-q", "--no-cache-dir", "--no-index", "--find-links",
                    str(WHEELHOUSE), "mlflow==3.17.2", "boto3"], check=True)  # fmt: skip
    PHASES.setdefault("reference: python -m venv", []).append(venv - start)
    PHASES.setdefault("reference: pip install (local wheels)", []).append(time.perf_counter() - venv)
    port = free_port()
    took, proc = serve([str(work / "venv/bin/mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                     "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}", "--serve-artifacts",
                     "--artifacts-destination", str(work / "artifacts")], work / "server.log", port)  # fmt: skip
    PHASES.setdefault("reference: mlflow server to /health", []).append(took)
    took = time.perf_counter() - start
    proc.stop()
    return took


def main() -> None:
    if not any(WHEELHOUSE.glob("mlflow-3.17.2-*.whl")):
        sys.exit(f"no wheelhouse: run `bash bench/run.sh` (it fills {WHEELHOUSE} once)")
    deployment = rendered_server()
    flags = chart_server_flags(deployment)
    default_flags = [f for f in flags if not f.startswith("--workers")]
    chart, reference = [], []
    workers: dict[str, list[tuple[float, float]]] = {"chart": [], "mlflow default": []}
    for i in range(PAIRS):
        for side in (("chart", "reference") if i % 2 == 0 else ("reference", "chart")):
            work = WORK / "server_start" / f"{side}-{i}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            if side == "reference":
                reference.append(reference_side(work))
            else:
                took, proc, _ = chart_side(work, deployment, flags)
                chart.append(took)
                proc.stop()
            print(f"pair {i + 1}: {side} {(reference if side == 'reference' else chart)[-1]:.1f} s", flush=True)
        for name, f in (("chart", flags), ("mlflow default", default_flags)):
            work = WORK / "server_start" / f"workers-{name.replace(' ', '-')}-{i}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            took, proc, _ = chart_side(work, deployment, f, phases={})
            time.sleep(2)  # let every worker finish importing before measuring memory
            workers[name].append((took, tree_rss_mb(proc.popen.pid)))
            proc.stop()
    shutil.rmtree(WORK / "server_start", ignore_errors=True)  # the fresh venvs: ~0.5 GB each
    ratio = median(reference) / median(chart)
    worker_flag = next((f for f in flags if f.startswith("--workers")), "--workers (unset)")
    text = table(
        f"3. Server cold start to /health ({PAIRS} alternating pairs, SQLite)",
        ["side", "median s", "runs (s)"],
        [["chart (migrate init container + server)", f"{median(chart):.1f}", " ".join(f"{t:.1f}" for t in chart)],
         ["reference (pip install mlflow boto3 into a fresh venv, then server)", f"{median(reference):.1f}",
          " ".join(f"{t:.1f}" for t in reference)],
         ["ratio", f"{ratio:.1f}x faster", f"target >= 10x: {verdict(ratio >= 10)}"]],
    ) + table(
        "3a. Where the start-up time goes",
        ["phase", "median s"],
        [[name, f"{median(v):.1f}"] for name, v in PHASES.items() if True],
    ) + table(
        "3b. Workers: chart setting vs MLflow's default",
        ["setting", "median start s", "median memory of the server (MiB)"],
        [[f"chart ({worker_flag})", f"{median([t for t, _ in workers['chart']]):.1f}", f"{median([m for _, m in workers['chart']]):.0f}"],
         ["MLflow default (no --workers)", f"{median([t for t, _ in workers['mlflow default']]):.1f}",
          f"{median([m for _, m in workers['mlflow default']]):.0f}"]],
    )  # fmt: skip
    write_section("3-server-start", text)


if __name__ == "__main__":
    main()
