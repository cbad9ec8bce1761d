"""2. Metric latency: from YOLOv5 writing an epoch's row to results.csv to that value being readable via MlflowClient.

One tracked training; a watcher polls results.csv (every 20 ms) and MlflowClient (every 50 ms). The reference setup
logs metrics once, after training: its latency for an epoch is the time from that row to the end of the run.
Target: median <= 2 s.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time

from mlflow.tracking import MlflowClient

from common import BIN, WORK, MlflowServer, median, table, verdict, write_section

EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 10


def main() -> None:
    from trainer.training.dataset import make_dataset

    work = WORK / "latency"
    shutil.rmtree(work, ignore_errors=True)
    data = make_dataset(work / "synth", train=32, val=8)
    server = MlflowServer(f"sqlite:///{work / 'mlflow.db'}", str(work / "artifacts"), work, {}).start()
    csv = work / "runs" / "lat" / "results.csv"
    row_seen: dict[int, float] = {}
    metric_seen: dict[int, float] = {}
    done = threading.Event()

    def watch_csv() -> None:
        while not done.is_set():
            if csv.exists():
                complete = csv.read_text().count("\n") - 1  # header line, then one line per finished epoch
                for epoch in range(complete):
                    row_seen.setdefault(epoch, time.monotonic())
            time.sleep(0.02)

    def watch_mlflow() -> None:
        client = MlflowClient(server.url)
        while not done.is_set():
            exp = client.get_experiment_by_name("latency")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            if runs:
                for m in client.get_metric_history(runs[0].info.run_id, "metrics/mAP_0.5"):
                    metric_seen.setdefault(m.step, time.monotonic())
            time.sleep(0.05)

    threads = [threading.Thread(target=watch_csv), threading.Thread(target=watch_mlflow)]
    for t in threads:
        t.start()
    try:
        subprocess.run(
            [str(BIN / "trainer"), "train", "--mlflow-uri", server.url, "--experiment", "latency", "--data", str(data),
             "--weights", "", "--cfg", "yolov5n.yaml", "--imgsz", "128", "--batch-size", "8", "--epochs", str(EPOCHS),
             "--workers", "0", "--project", str(work / "runs"), "--name", "lat"],
            check=True, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        end = time.monotonic()
        time.sleep(0.5)
    finally:
        done.set()
        for t in threads:
            t.join()
        server.stop()
    epochs = sorted(set(row_seen) & set(metric_seen))
    assert len(epochs) == EPOCHS, f"saw rows {sorted(row_seen)} and metrics {sorted(metric_seen)}"
    ours = [metric_seen[e] - row_seen[e] for e in epochs]
    reference = [end - row_seen[e] for e in epochs]
    text = table(
        f"2. Metric latency ({EPOCHS} epochs; row written -> readable via MlflowClient)",
        ["side", "median s", "max s", "target <= 2 s"],
        [["trainer (live, step=epoch)", f"{median(ours):.2f}", f"{max(ours):.2f}", verdict(median(ours) <= 2)],
         ["reference (logs after training)", f"{median(reference):.2f}", f"{max(reference):.2f}", verdict(median(reference) <= 2)]],
    )  # fmt: skip
    write_section("2-latency", text)


if __name__ == "__main__":
    main()
