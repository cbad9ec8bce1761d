"""6. The chart on the real node (ci/node), as a user feels it: seconds from `helm install` to the server pod Ready and
to the first epoch's metric visible in MLflow, from the registered version to serving it (the follower's pin, then the
serving pod's start to Ready), and the memory of the server, trainer and serving pods (peak of each pod's memory
cgroup), plus what the node's own daemons use. One side only: nothing else installs this stack here.

Needs the images (`TORCH_VARIANT=cuda ci/images.sh build server trainer pause`) and brings the node up if needed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, table, write_section

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from nodelib import CHART, NODE, Mlflow, Node, image_ref, run, wait_until  # noqa: E402
from test_real_node import METRIC, MODEL, RELEASE, SERVICE, first_epoch_logged, serving_pods, small, status  # noqa: E402

NS = "bench-node"
CGROUP = Path("/sys/fs/cgroup/memory/mlflow-stack-node")


def pod_memory_peak(uid: str) -> int:
    """Peak bytes of a pod's memory cgroup (cgroup v1, kubelet's cgroupfs layout under the node's cgroupRoot)."""
    for path in CGROUP.glob(f"kubepods*/**/pod{uid}/memory.max_usage_in_bytes"):
        return int(path.read_text())
    return 0


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                              if line.startswith("VmRSS")))  # fmt: skip
        except (OSError, StopIteration):
            pass
    return total / 1024


def daemon_pids() -> list[int]:
    pids = []
    for state in (ROOT / ".tools/node/pids", ROOT / ".tools/node/cluster/pids"):
        if state.exists():
            pids += [int(line.split()[1]) for line in state.read_text().splitlines() if line.strip()]
    return pids


def main() -> None:
    was_up = run(["bash", NODE, "status"], check=False).returncode == 0
    run(["bash", NODE, "up"], timeout=900)
    run(["bash", NODE, "load", *(image_ref(n) for n in ("server", "trainer", "s3"))], timeout=1800)
    node = Node(env=None)
    node.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=300)
    node.kubectl("create", "namespace", NS)
    mlflow = Mlflow(node, NS, SERVICE)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # the local chart with the images `ci/node load` imported: the CUDA trainer build (tag <appVersion>-cuda)
            values = small(Path(tmp), training={"image": {"variant": "cuda"},
                                                "params": {"epochs": 6, "registerModel": MODEL, "modelAlias": "champion"}},
                           serving={"enabled": True, "model": MODEL, "followAlias": {"intervalSeconds": 5},
                                    "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}}})  # fmt: skip
            t0 = time.monotonic()
            node.helm("helm", "install", RELEASE, CHART, "-n", NS, "-f", values)

            def server_ready() -> bool:
                pods = node.get("pods", "-n", NS, "-l", "app.kubernetes.io/component=server")["items"]
                return bool(pods) and all(c.get("ready") for p in pods for c in p["status"].get("containerStatuses", [{}]))
            wait_until("server pod Ready", server_ready, 600, 0.5)
            ready = time.monotonic() - t0
            wait_until("first epoch in MLflow", lambda: first_epoch_logged(mlflow), 900, 0.5)
            first = time.monotonic() - t0
            job = node.get("jobs", "-n", NS, "-l", "app.kubernetes.io/component=training")["items"][0]["metadata"]["name"]
            idle = rss_mib(daemon_pids())
            pods = {p["metadata"]["labels"].get("app.kubernetes.io/component"): p["metadata"]["uid"]
                    for p in node.get("pods", "-n", NS)["items"]}  # fmt: skip
            # a finished pod's cgroup is removed by kubelet: read the trainer's peak while it runs
            trainer_peak = 0.0

            def finished() -> bool:
                nonlocal trainer_peak
                trainer_peak = max(trainer_peak, pod_memory_peak(pods["training"]) / 2**20)
                return bool(node.get(f"job/{job}", "-n", NS).get("status", {}).get("succeeded"))
            wait_until("the training Job", finished, 900, 1)
            done = time.monotonic()
            wait_until("the follower's pin", lambda: status(node, NS).startswith(f"serving models:/{MODEL}/1"), 120, 0.5)
            pinned = time.monotonic()
            wait_until("the serving pod on version 1", lambda: "1" in serving_pods(node, NS).values(), 600, 0.5)
            serving_ready = time.monotonic()
            serving_uid = next(p["metadata"]["uid"] for p in node.get("pods", "-n", NS, "-l",
                               "app.kubernetes.io/component=serving")["items"]
                               if p["metadata"].get("annotations", {}).get("mlflow-stack.io/model-version") == "1")
            serving_peak = pod_memory_peak(serving_uid) / 2**20
            server_peak = pod_memory_peak(pods["server"]) / 2**20
            runs = mlflow.runs()
    finally:
        node.kubectl("delete", "namespace", NS, "--wait=true", check=False, timeout=300)
        if not was_up:
            run(["bash", NODE, "down"], timeout=300)
    rows = [
        ["`helm install` → server pod Ready (migration init container + startup probe)", f"{ready:.1f} s"],
        [f"`helm install` → first epoch's `{METRIC}` visible in MLflow", f"{first:.1f} s"],
        ["training Job done → the follower pins version 1 (interval 5 s)", f"{pinned - done:.1f} s"],
        ["pin → serving pod Ready on it (pod start, model download through the server, load)", f"{serving_ready - pinned:.1f} s"],
        ["server pod, peak memory during the install + training", f"{server_peak:.0f} MiB"],
        ["serving pod (yolov5n), peak memory", f"{serving_peak:.0f} MiB"],
        ["trainer pod (yolov5n, 128 px, CPU), peak memory", f"{trainer_peak:.0f} MiB"],
        ["node daemons (etcd, API server, controllers, kwok, containerd, kubelet, kube-proxy, CoreDNS), RSS", f"{idle:.0f} MiB"],
        ["run status", runs[-1]["info"]["status"] if runs else "none"],
    ]
    text = table("6. Real node: install to Ready, to first metric, to serving, pod memory (yolov5n 128 px, 6 epochs, 16 images)",
                 ["what", "measured"], rows)  # fmt: skip
    write_section("6-node", text)


if __name__ == "__main__":
    main()
