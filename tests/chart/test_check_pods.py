"""The object store check hook's verdicts (charts/mlflow-stack/files/check-pods.py, templates/artifacts/
objectstore-check.yaml) on pod and claim states as the API server returns them: a pull error names the image after
PULL_SECONDS, an unbound claim names the claim after CLAIM_SECONDS, a Ready pod passes. What `helm install` prints
from it is tests/e2e's (test_real_node.py, the failed first installs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "charts/mlflow-stack/files/check-pods.py"
spec = importlib.util.spec_from_file_location("check_pods", SCRIPT)
check_pods = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_pods)

SELECTOR = "app.kubernetes.io/component=objectstore,app.kubernetes.io/instance=t,app.kubernetes.io/name=mlflow-stack"
IMAGE = "registry.example/seaweedfs:no-such-tag"


def pod(waiting: dict | None = None, ready: bool = False, scheduled: dict | None = None) -> dict:
    status: dict = {"phase": "Pending", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if scheduled:
        status["conditions"].append({"type": "PodScheduled", **scheduled})
    if waiting:
        status["containerStatuses"] = [{"name": "objectstore", "image": IMAGE, "state": {"waiting": waiting}}]
    return {"metadata": {"name": "t-objectstore-abc"}, "status": status,
            "spec": {"containers": [{"name": "objectstore", "image": IMAGE}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "t-objectstore"}}]}}  # fmt: skip


class Cluster:
    def __init__(self, pods: list[dict], phase: str = "Bound", storage_class: str | None = "standard") -> None:
        self.pods, self.phase, self.storage_class, self.paths = pods, phase, storage_class, []

    def get(self, path: str) -> dict:
        self.paths.append(path)
        if "/pods?labelSelector=" in path:
            return {"items": self.pods}
        assert path == "/api/v1/namespaces/ml/persistentvolumeclaims/t-objectstore", path
        spec = {"storageClassName": self.storage_class} if self.storage_class else {}
        return {"spec": spec, "status": {"phase": self.phase}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def check(cluster: Cluster, clock: Clock) -> check_pods.Check:
    return check_pods.Check(cluster.get, "ml", SELECTOR, pull_seconds=15, claim_seconds=45, clock=clock)


def test_a_ready_pod_passes_and_the_selector_is_url_encoded():
    cluster = Cluster([pod(ready=True)])
    assert check(cluster, Clock()).poll() == "ready: pod t-objectstore-abc"
    assert cluster.paths == ["/api/v1/namespaces/ml/pods?labelSelector=app.kubernetes.io/component%3Dobjectstore%2C"
                             "app.kubernetes.io/instance%3Dt%2Capp.kubernetes.io/name%3Dmlflow-stack"]  # fmt: skip


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"])
def test_an_image_that_cannot_be_pulled_is_named_after_pull_seconds(reason):
    clock = Clock()
    waiting = {"reason": reason, "message": f'Back-off pulling image "{IMAGE}": not found'}
    c = check(Cluster([pod(waiting)]), clock)
    assert c.poll() == ""
    clock.now += 14
    assert c.poll() == ""
    clock.now += 1
    verdict = c.poll()
    assert verdict.startswith(f"image {IMAGE} cannot be pulled (container objectstore of pod t-objectstore-abc: "
                              f"{reason}: Back-off pulling image"), verdict
    assert "kubectl describe pod t-objectstore-abc -n ml" in verdict


def test_a_pull_that_recovers_starts_the_clock_again():
    clock = Clock()
    pods = [pod({"reason": "ErrImagePull", "message": "timeout"})]
    c = check(Cluster(pods), clock)
    assert c.poll() == ""
    clock.now += 10
    pods[0] = pod({"reason": "ContainerCreating"})
    assert c.poll() == ""
    pods[0] = pod({"reason": "ErrImagePull", "message": "timeout"})
    clock.now += 10
    assert c.poll() == ""  # 20 s since the first error, 0 since this one


@pytest.mark.parametrize(("storage_class", "named"), [
    (None, "no StorageClass: the cluster has no default StorageClass"),
    ("no-such-class", "StorageClass no-such-class")])  # fmt: skip
def test_an_unbound_claim_is_named_after_claim_seconds(storage_class, named):
    clock = Clock()
    unschedulable = {"status": "False", "reason": "Unschedulable",
                     "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."}  # fmt: skip
    c = check(Cluster([pod(scheduled=unschedulable)], phase="Pending", storage_class=storage_class), clock)
    assert c.poll() == ""
    clock.now += 45
    verdict = c.poll()
    assert verdict.startswith(f"PersistentVolumeClaim t-objectstore is Pending, not bound after 45s ({named})"), verdict
    assert "unbound immediate PersistentVolumeClaims" in verdict
    assert "kubectl describe pvc t-objectstore -n ml" in verdict


def test_a_bound_claim_and_a_starting_pod_keep_waiting():
    clock = Clock()
    c = check(Cluster([pod({"reason": "ContainerCreating"})]), clock)
    clock.now += 1000
    assert c.poll() == ""
    assert check(Cluster([]), clock).poll() == ""


def test_main_prints_each_state_once_and_exits_1_with_the_verdict_line(monkeypatch, capsys, tmp_path):
    (tmp_path / "ca.crt").write_text("")
    monkeypatch.setattr(check_pods.ssl, "create_default_context", lambda cafile: None)
    waiting = {"reason": "ErrImagePull", "message": "not found"}
    cluster = Cluster([pod(waiting)])
    monkeypatch.setattr(check_pods.Api, "get", lambda self, path: cluster.get(path))
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "SERVICE_ACCOUNT_DIR": str(tmp_path), "POD_NAMESPACE": "ml",
           "SELECTOR": SELECTOR, "PULL_SECONDS": "1", "CLAIM_SECONDS": "45", "TIMEOUT": "60"}  # fmt: skip
    slept = []
    monkeypatch.setattr(check_pods.time, "monotonic", lambda: 100.0 + 2 * len(slept))
    assert check_pods.main(env, sleep=slept.append) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"objectstore-check: waiting: pod t-objectstore-abc: image {IMAGE} ErrImagePull", lines
    assert len(lines) == 2 and lines[1].startswith(f"objectstore-check: image {IMAGE} cannot be pulled"), lines


def test_a_claim_waiting_for_its_pods_node_is_not_blamed_for_the_cpu():
    clock = Clock()
    no_cpu = {"status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}
    c = check(Cluster([pod(scheduled=no_cpu)], phase="Pending", storage_class="standard"), clock)
    clock.now += 300
    assert c.poll() == ""
    assert c.last == "pod t-objectstore-abc Pending: 0/3 nodes are available: 3 Insufficient cpu."
    # once on a node, a claim still unbound is the cause (provisioning fails)
    on_node = Cluster([pod(scheduled={"status": "True"})], phase="Pending", storage_class="standard")
    late = check(on_node, clock)
    clock.now += 45
    verdict = late.poll()
    assert verdict.startswith("PersistentVolumeClaim t-objectstore is Pending, not bound after 45s (StorageClass standard)")
