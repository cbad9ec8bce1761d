"""4. Tracking throughput: 8 concurrent clients x 500 metric batches, SQLite and PostgreSQL backends.

The server runs with the chart's default flags (workers etc.); each client has its own run and posts log-batch
requests (10 metrics per batch) over its own HTTP session. Afterwards every metric history is read back and counted.
Target: 0 errors, 0 lost points.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time

import requests
from mlflow.tracking import MlflowClient

from common import WORK, chart_server_env, chart_server_flags, median, percentile, rendered_server, start_postgres, start_server, table, verdict, write_section

CLIENTS, BATCHES, KEYS = 8, int(sys.argv[1]) if len(sys.argv) > 1 else 500, 10


def hammer(url: str) -> dict[str, object]:
    client = MlflowClient(url)
    exp = client.create_experiment(f"throughput-{time.time_ns()}")
    runs = [client.create_run(exp).info.run_id for _ in range(CLIENTS)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(run_id: str) -> None:
        session = requests.Session()
        mine, bad = [], []
        for step in range(BATCHES):
            body = {"run_id": run_id, "metrics": [{"key": f"m{k}", "value": step * 0.5 + k, "timestamp": 1_700_000_000_000 + step,
                                                    "step": step} for k in range(KEYS)]}  # fmt: skip
            start = time.perf_counter()
            try:
                response = session.post(f"{url}/api/2.0/mlflow/runs/log-batch", json=body, timeout=60)
                if response.status_code != 200:
                    bad.append(f"HTTP {response.status_code}: {response.text[:120]}")
            except requests.RequestException as exc:
                bad.append(type(exc).__name__)
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    threads = [threading.Thread(target=worker, args=(r,)) for r in runs]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    stored = sum(len(client.get_metric_history(r, f"m{k}")) for r in runs for k in range(KEYS))
    return {"rps": len(latencies) / elapsed, "p50": median(latencies) * 1000, "p99": percentile(latencies, 99) * 1000,
            "errors": errors, "lost": CLIENTS * BATCHES * KEYS - stored}  # fmt: skip


def main() -> None:
    work = WORK / "throughput"
    shutil.rmtree(work, ignore_errors=True)
    deployment = rendered_server()  # chart defaults: backend.type=sqlite
    flags, env = chart_server_flags(deployment), chart_server_env(deployment)
    results = {}
    proc, url = start_server(flags, f"sqlite:///{work / 'mlflow.db'}", str(work / "artifacts"), work, env)
    try:
        results["SQLite"] = hammer(url)
    finally:
        proc.stop()
    pg_deployment = rendered_server("--set", "backend.type=postgresql")
    pg_flags, pg_env = chart_server_flags(pg_deployment), chart_server_env(pg_deployment)
    with start_postgres() as pg:
        proc, url = start_server(pg_flags, pg.create_database("bench"), str(work / "artifacts"), work, pg_env)
        try:
            results["PostgreSQL"] = hammer(url)
        finally:
            proc.stop()
    rows = []
    for name, r in results.items():
        errs = r["errors"]
        rows.append([name, f"{r['rps']:.0f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}", len(errs), r["lost"],
                     verdict(not errs and r["lost"] == 0)])  # fmt: skip
        if errs:
            print(f"{name}: first errors: {errs[:3]}")
    worker_flag = next((f for f in flags if f.startswith("--workers")), "")
    text = table(
        f"4. Tracking throughput ({CLIENTS} clients x {BATCHES} log-batch requests x {KEYS} metrics, chart flags {worker_flag})",
        ["backend", "requests/s", "p50 ms", "p99 ms", "errors", "lost points", "target 0/0"], rows,
    )  # fmt: skip
    for name, r in results.items():
        if r["errors"]:
            kinds = sorted({e.split(":")[0] for e in r["errors"]})
            text += f"\n{name} errors ({', '.join(kinds)}), first: `{r['errors'][0]}`\n"
    write_section("4-throughput", text)


if __name__ == "__main__":
    main()
