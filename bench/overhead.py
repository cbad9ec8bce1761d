"""1. Wrapper overhead: `trainer train` vs bare YOLOv5 on the same data, flags and tracking server.

"Bare" is `python -m trainer.training.yolo_entry` without the handshake: YOLOv5's own train.py plus only the offline shims
that any offline run needs (a plain `python -m yolov5.train` tries to download a font and fails here; the shims only
set environment variables and a local font, they add no work to training).
Pairs alternate so drift in machine load hits both sides alike. Target: overhead <= 3 %.

Where the time goes: both sides' output lines are time-stamped, which splits each run into
start-up (launch -> YOLOv5 prints its `weights=` arguments line, i.e. train.main() begins; in `trainer train` that is
after imports, the MLflow run, params and the handshake), training (-> YOLOv5's `Results saved to`) and
tail (-> process exit; in `trainer train` the final metrics, artifact upload and end status).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from common import BIN, WORK, MlflowServer, median, table, verdict, write_section

PAIRS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
EPOCHS = sys.argv[2] if len(sys.argv) > 2 else "5"
PHASES = ("start-up", "training", "tail")


def timed(argv: list[str], cwd) -> dict[str, float]:  # noqa: ANN001
    """Runs argv, returns wall time and its phases from the time-stamped output lines."""
    env = {k: v for k, v in os.environ.items() if k != "TRAINER_HANDSHAKE"}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    began = saved = None
    tail: list[bytes] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter()
        if began is None and b"weights=" in line:
            began = now
        if b"Results saved to" in line:
            saved = now
        tail = (tail + [line])[-20:]
    if proc.wait() != 0:
        sys.exit(f"{argv[:3]} failed:\n" + b"".join(tail).decode(errors="replace"))
    end = time.perf_counter()
    began, saved = began or start, saved or end
    return {"wall": end - start, "start-up": began - start, "training": saved - began, "tail": end - saved}


def main() -> None:
    from trainer.training.dataset import make_dataset

    work = WORK / "overhead"
    shutil.rmtree(work, ignore_errors=True)
    data = make_dataset(work / "synth", train=32, val=8)
    server = MlflowServer(f"sqlite:///{work / 'mlflow.db'}", str(work / "artifacts"), work, {}).start()
    flags = ["--data", str(data), "--weights", "", "--cfg", "yolov5n.yaml", "--imgsz", "128", "--batch-size", "8",
             "--epochs", EPOCHS, "--workers", "0", "--device", "cpu"]  # fmt: skip
    sides = {
        "bare YOLOv5 (yolo_entry)": [sys.executable, "-m", "trainer.training.yolo_entry", *flags, "--project", str(work / "bare"),
                                     "--name", "r", "--exist-ok"],  # fmt: skip
        "trainer train": [str(BIN / "trainer"), "train", "--mlflow-uri", server.url, *flags, "--project",
                          str(work / "tracked")],  # fmt: skip
        # Diagnostic third side (not part of the target): how much of the overhead is the system-metrics monitor.
        "trainer train --system-metrics false": [str(BIN / "trainer"), "train", "--mlflow-uri", server.url, *flags,
                                                 "--system-metrics", "false", "--project", str(work / "tracked")],  # fmt: skip
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    try:
        for i in range(PAIRS):
            for name in (list(sides) if i % 2 == 0 else list(reversed(sides))):
                shutil.rmtree(work / "bare", ignore_errors=True)
                runs[name].append(timed(sides[name], work))
                r = runs[name][-1]
                print(f"pair {i + 1}: {name} {r['wall']:.2f} s (" + ", ".join(f"{p} {r[p]:.2f}" for p in PHASES) + ")",
                      flush=True)  # fmt: skip
    finally:
        server.stop()

    def med(name: str, key: str) -> float:
        return median([r[key] for r in runs[name]])

    bare, tracked, _ = list(sides)
    overhead = (med(tracked, "wall") - med(bare, "wall")) / med(bare, "wall") * 100
    rows = [[name, f"{med(name, 'wall'):.2f}", *(f"{med(name, p):.2f}" for p in PHASES),
             " ".join(f"{r['wall']:.1f}" for r in runs[name])] for name in sides]  # fmt: skip
    rows.append(["difference", f"{med(tracked, 'wall') - med(bare, 'wall'):+.2f} ({overhead:+.1f} %)",
                 *(f"{med(tracked, p) - med(bare, p):+.2f}" for p in PHASES),
                 f"target <= 3 %: {verdict(overhead <= 3)}"])  # fmt: skip
    rows.insert(2, rows.pop(3))  # the target's difference row right under the two sides it compares
    text = table(
        f"1. Wrapper overhead ({PAIRS} alternating pairs, yolov5n 128 px, {EPOCHS} epochs, 32 images, CPU, SQLite server)",
        ["side", "median wall s", "start-up s", "training s", "tail s", "runs (s)"], rows,
    )  # fmt: skip
    write_section("1-overhead", text)


if __name__ == "__main__":
    main()
