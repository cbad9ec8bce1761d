"""7. Serving latency: `trainer serve` (MLflow's scoring server) vs YOLOv5 in process, same weights, same images.

For yolov5n and yolov5s (each trained from scratch for 1 epoch at 128 px on the synthetic dataset and registered with
alias champion: what costs at inference is the architecture, not the training), on the same 640 px JPEGs (generated,
fixed seeds) at inference size 640:
  A. in-process YOLOv5: yolov5.load(best.pt, device='cpu') (AutoShape) called on the decoded image;
  B. POST /invocations of `trainer serve` over HTTP, one image per request (base64 JPEG, params size 640);
  C. the registered pyfunc loaded in process (mlflow.pyfunc.load_model) .predict(one-row DataFrame of JPEG bytes).
Where the time goes: A is the network itself, C - A the pyfunc wrapper (JPEG decode, pandas rows), B - C HTTP, JSON,
base64 and the scoring server. Each cell is 1 or 8 concurrent clients (threads for A and C, one HTTP connection per
request for B); in every round each side runs PER_ROUND requests, the side order alternating between rounds, so drift
in machine load hits all sides alike. The bench process uses as many torch threads as the scoring server gets (probed:
a fresh process loading the model). With 8 clients A runs 8 inferences at once; the pyfunc's lock runs one at a time.
Target: the scoring path adds at most 15 % to in-process latency at p50 with 1 client (B/A <= 1.15).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from mlflow.tracking import MlflowClient

from common import (BIN, WORK, MlflowServer, Proc, free_port, http_ok, percentile, table, verdict, wait_until,
                    write_section)  # fmt: skip
from harness import trainer_env

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 4
PER_ROUND = 8  # requests per side, round and concurrency: ROUNDS x PER_ROUND per cell
WARMUP = 3
CLIENTS = (1, 8)
ARCHS = ("yolov5n", "yolov5s")
SIZE = 640
IMAGES = 8
TARGET = 15  # % the scoring path may add at p50, 1 client
SIDES = ("A in-process YOLOv5", "B trainer serve (HTTP)", "C pyfunc in process")


def jpegs(count: int) -> list[bytes]:
    """New 640 px images of the dataset's kind (shapes on noise), fixed seeds: the same bytes for every side."""
    import numpy as np

    from trainer.training.dataset import _sample

    out = []
    for seed in range(100, 100 + count):
        image, _ = _sample(np.random.default_rng(seed), SIZE)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=95)
        out.append(buffer.getvalue())
    return out


def train(server: MlflowServer, data: Path, work: Path, arch: str) -> tuple[str, str, Path]:
    """One epoch from scratch, registered as bench-ARCH@champion; returns (name, version, best.pt)."""
    name = f"bench-{arch}"
    started = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "trainer"), "train", "--mlflow-uri", server.url, "--experiment", "serving", "--data", str(data),
         "--weights", "", "--cfg", f"{arch}.yaml", "--imgsz", "128", "--batch-size", "8", "--epochs", "1",
         "--workers", "0", "--device", "cpu", "--system-metrics", "false", "--project", str(work / "runs"),
         "--name", arch, "--register-model", name, "--model-alias", "champion"],
        cwd=work, env=trainer_env(), capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        sys.exit(f"training {arch} failed:\n{result.stderr[-3000:]}")
    version = MlflowClient(server.url).get_model_version_by_alias(name, "champion").version
    print(f"{arch}: trained and registered {name}/{version} in {time.perf_counter() - started:.0f} s", flush=True)
    return name, version, work / "runs" / arch / "weights" / "best.pt"


def scoring_server_threads(server_url: str, uri: str) -> int:
    """torch's thread count once a fresh process has loaded the model as the scoring server does (nothing sets it)."""
    probe = "import sys, mlflow; mlflow.pyfunc.load_model(sys.argv[1]); import torch; print(torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", probe, uri], env={**os.environ, "MLFLOW_TRACKING_URI": server_url},
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return int(out.split()[-1])


def post(port: int, body: bytes) -> None:
    """One scoring request as a plain client sends it: its own connection, the whole answer read and parsed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"/invocations answered {response.status}: {answer[:300]!r}")
    if "predictions" not in json.loads(answer):
        raise RuntimeError(f"/invocations answered without predictions: {answer[:300]!r}")


def run_clients(pool: ThreadPoolExecutor, call: Callable[[int], object], clients: int, requests: int
                ) -> tuple[list[float], float]:  # fmt: skip
    """`clients` threads share `requests` calls (call(i) uses image i); returns each call's seconds and the wall time."""

    def client(first: int) -> list[float]:
        seconds = []
        for i in range(first, requests, clients):
            start = time.perf_counter()
            call(i)
            seconds.append(time.perf_counter() - start)
        return seconds

    start = time.perf_counter()
    per_client = list(pool.map(client, range(clients)))
    return [s for seconds in per_client for s in seconds], time.perf_counter() - start


def measure(arch: str, name: str, version: str, weights: Path, images: list[bytes], server_url: str, work: Path,
            pool: ThreadPoolExecutor) -> dict[tuple[str, int], tuple[list[float], float]]:  # fmt: skip
    """All sides of one model, interleaved; (side, clients) -> (latencies, total wall s)."""
    import mlflow
    import pandas as pd
    import yolov5
    from PIL import Image
    from yolov5.models.common import AutoShape

    port = free_port()
    # PATH: MLflow starts `uvicorn` by name (the image has it on PATH; a venv's python run by path does not)
    env = {"MLFLOW_TRACKING_URI": server_url, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    serve = Proc([str(BIN / "trainer"), "serve", "--model", name, "--alias", "champion", "--version", version,
                  "--host", "127.0.0.1", "--port", str(port)], work / f"serve-{arch}.log", env)  # fmt: skip
    try:
        mlflow.set_tracking_uri(server_url)
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        in_process = yolov5.load(str(weights), device="cpu")
        assert isinstance(in_process, AutoShape)  # yolov5.load falls back to the raw model when loading fails
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/ping"), 300, "trainer serve", serve)

        decoded = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
        frames = [pd.DataFrame({"image": [data]}) for data in images]
        bodies = [json.dumps({"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(data).decode()]]},
                              "params": {"size": SIZE}}).encode() for data in images]  # fmt: skip
        calls: dict[str, Callable[[int], object]] = {
            SIDES[0]: lambda i: in_process(decoded[i % IMAGES], size=SIZE),
            SIDES[1]: lambda i: post(port, bodies[i % IMAGES]),
            SIDES[2]: lambda i: pyfunc.predict(frames[i % IMAGES], params={"size": SIZE}),
        }
        for side, call in calls.items():  # first calls (allocations, every pool thread's torch set-up) not counted
            run_clients(pool, call, 1, WARMUP)
            run_clients(pool, call, max(CLIENTS), max(CLIENTS))
        results: dict[tuple[str, int], tuple[list[float], float]] = {(s, c): ([], 0.0) for s in SIDES for c in CLIENTS}
        for clients in CLIENTS:
            for r in range(ROUNDS):
                for side in (SIDES if r % 2 == 0 else SIDES[::-1]):
                    seconds, wall = run_clients(pool, calls[side], clients, PER_ROUND)
                    done, total = results[(side, clients)]
                    results[(side, clients)] = (done + seconds, total + wall)
            p50s = [f"{s[0]} p50 {percentile(results[(s, clients)][0], 50) * 1000:.0f} ms" for s in SIDES]
            print(f"{arch}, {clients} client(s): " + ", ".join(p50s), flush=True)
        return results
    finally:
        serve.stop()


def main() -> None:
    import torch

    from trainer.training.dataset import make_dataset
    from trainer.offline import patch_yolov5, prepare_environment, quiet_known_warnings

    omp = os.environ.get("OMP_NUM_THREADS")
    prepare_environment()  # side A imports yolov5 here: no hub look-up, no font download (as in the training child)
    patch_yolov5()
    # yolov5's import sets OMP_NUM_THREADS (cpus - 1) for its children; the scoring server imports torch before
    # yolov5, so its torch keeps its default: `trainer serve` must not inherit the changed value.
    if omp is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp
    quiet_known_warnings()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # loading the pyfunc: no progress bars
    import yolov5.models.common

    yolov5.models.common.attempt_download_from_hub = lambda *args, **kwargs: None  # a local best.pt needs no hub

    work = WORK / "serving"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = make_dataset(work / "synth", train=32, val=8)
    images = jpegs(IMAGES)
    server = MlflowServer(f"sqlite:///{work / 'mlflow.db'}", str(work / "artifacts"), work, {}).start()
    measured = {}
    try:
        trained = {arch: train(server, data, work, arch) for arch in ARCHS}
        name, version, _ = trained[ARCHS[0]]
        threads = scoring_server_threads(server.url, f"models:/{name}/{version}")
        torch.set_num_threads(threads)  # sides A and C get what the scoring server's torch gets
        with ThreadPoolExecutor(max(CLIENTS)) as pool:
            for arch in ARCHS:
                measured[arch] = measure(arch, *trained[arch], images, server.url, work, pool)
    finally:
        server.stop()

    def p(arch: str, side: str, clients: int, q: float) -> float:
        return percentile(measured[arch][(side, clients)][0], q) * 1000

    def rate(arch: str, side: str, clients: int) -> float:
        seconds, wall = measured[arch][(side, clients)]
        return len(seconds) / wall

    rows, where = [], []
    a, b, c = SIDES
    for arch in ARCHS:
        for side in SIDES:
            cells = [f"{p(arch, side, n, 50):.1f} / {p(arch, side, n, 99):.1f} / {rate(arch, side, n):.1f}" for n in CLIENTS]
            rows.append([arch, side, *cells])
        ratios = [p(arch, b, n, 50) / p(arch, a, n, 50) for n in CLIENTS]
        rows.append([arch, "B/A at p50", f"{ratios[0]:.2f}x ({(ratios[0] - 1) * 100:+.0f} %); target <= +{TARGET} %: "
                     f"{verdict(ratios[0] <= 1 + TARGET / 100)}", f"{ratios[1]:.2f}x"])  # fmt: skip
        where.append(f"{arch} {p(arch, a, 1, 50):.0f} ms network (A), {p(arch, c, 1, 50) - p(arch, a, 1, 50):+.1f} ms "
                     f"pyfunc wrapper (C-A), {p(arch, b, 1, 50) - p(arch, c, 1, 50):+.1f} ms HTTP/JSON/base64 and "
                     f"server (B-C)")  # fmt: skip
    text = table(
        f"7. Serving latency (1-epoch yolov5n/yolov5s, {IMAGES} generated 640 px JPEGs at size 640, CPU, "
        f"{threads} torch threads on every side; {ROUNDS} interleaved rounds x {PER_ROUND} requests per cell)",
        ["model", "side", "1 client: p50 / p99 ms / images/s", f"{max(CLIENTS)} clients: p50 / p99 ms / images/s"], rows,
    )  # fmt: skip
    text += f"\nWhere the time goes (p50, 1 client): {'; '.join(where)}.\n"
    print(text.splitlines()[-1], flush=True)
    write_section("7-serving", text)


if __name__ == "__main__":
    main()
