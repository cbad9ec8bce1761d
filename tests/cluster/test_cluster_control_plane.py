"""The throwaway control plane itself (ci/cluster): what it runs, what kwok fakes, and that up/down clean up.

These need no chart: they prove the machinery the chart lifecycle tests stand on.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import pytest
from clusterlib import BIN, CLUSTER, non_loopback_sockets, pid_alive, pids_of, run, sockets, versions

pytestmark = pytest.mark.cluster


def test_api_server_is_the_pinned_release_with_ready_fake_nodes(cluster):
    info = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert info["serverVersion"]["gitVersion"] == versions()["KUBE_VERSION"]
    assert info["clientVersion"]["gitVersion"] == versions()["KUBE_VERSION"]
    nodes = {n["metadata"]["name"]: n for n in cluster.get("nodes")["items"]}
    assert set(nodes) == {"kwok-cpu-0", "kwok-gpu-0"}
    for node in nodes.values():
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["metadata"]["name"]
    assert nodes["kwok-gpu-0"]["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    default_sc = [
        sc["metadata"]["name"]
        for sc in cluster.get("storageclass")["items"]
        if sc["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"
    ]
    assert default_sc == ["kwok-volume"]
    cluster.kubectl("get", "crd", "servicemonitors.monitoring.coreos.com", "httproutes.gateway.networking.k8s.io")


def test_every_process_uses_loopback_only(cluster):
    pids = pids_of(cluster.state)
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
    for name, pid in pids.items():
        assert pid_alive(pid), f"{name} (pid {pid}) is not running"
    assert non_loopback_sockets(pids) == []
    # the check looked at real sockets: the serving ones listen, the clients are connected
    listening = {name for name, pid in pids.items() for proto, _, peer in sockets(pid) if peer in ("*", "0.0.0.0")}
    assert {"etcd", "kube-apiserver", "kwok"} <= listening
    connected = {name for name, pid in pids.items() for proto, _, peer in sockets(pid) if peer == "127.0.0.1"}
    assert {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} <= connected


WORKLOADS = textwrap.dedent(
    """\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
          - name: web
            image: registry.invalid/web:1
            readinessProbe: {httpGet: {path: /health, port: 5000}}
            volumeMounts: [{name: data, mountPath: /data}]
          volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
    ---
    apiVersion: v1
    kind: PersistentVolumeClaim
    metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
    ---
    apiVersion: batch/v1
    kind: Job
    metadata: {name: train}
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers: [{name: train, image: registry.invalid/train:1}]
    ---
    apiVersion: batch/v1
    kind: Job
    metadata: {name: train-gpu}
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          nodeSelector: {nvidia.com/gpu.present: "true"}
          runtimeClassName: nvidia
          tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
          containers:
          - name: train
            image: registry.invalid/train:1
            resources: {limits: {nvidia.com/gpu: 1}}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: gpu-without-toleration}
    spec:
      containers:
      - name: train
        image: registry.invalid/train:1
        resources: {limits: {nvidia.com/gpu: 1}}
    """
)


def test_kwok_fakes_deployments_jobs_gpus_and_volumes(cluster, namespace):
    ns = ["-n", namespace]
    cluster.apply(WORKLOADS, *ns)
    cluster.wait("--for=condition=Available", "deployment/web", *ns)
    cluster.wait("--for=condition=Complete", "job/train", "job/train-gpu", *ns)
    pvc = cluster.get("pvc/data", *ns)
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["spec"]["storageClassName"] == "kwok-volume"  # defaulted by the admission plugin
    pv = cluster.get("pv", pvc["spec"]["volumeName"])
    assert pv["spec"]["claimRef"]["name"] == "data"
    gpu_pods = cluster.get("pods", *ns, "-l", "job-name=train-gpu")["items"]
    assert [p["spec"]["nodeName"] for p in gpu_pods] == ["kwok-gpu-0"]
    cpu_pods = cluster.get("pods", *ns, "-l", "job-name=train")["items"]
    assert [p["spec"]["nodeName"] for p in cpu_pods] == ["kwok-cpu-0"]  # the GPU node's taint keeps it off

    def unschedulable():
        pod = cluster.get("pod/gpu-without-toleration", *ns)
        conds = {c["type"]: c for c in pod["status"].get("conditions", [])}
        sched = conds.get("PodScheduled", {})
        return sched.get("status") == "False" and sched.get("reason") == "Unschedulable" and pod

    pod = cluster.wait_until("the GPU pod without toleration to be unschedulable", unschedulable, timeout=60)
    assert pod["status"]["phase"] == "Pending"


TEST_CHART = {
    "Chart.yaml": """\
        apiVersion: v2
        name: probe
        version: 0.1.0
        """,
    "templates/deploy.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: {{ .Release.Name }}-web}
        spec:
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers: [{name: web, image: registry.invalid/web:1}]
        ---
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata:
          name: {{ .Release.Name }}-data
          annotations: {helm.sh/resource-policy: keep}
        spec:
          accessModes: [ReadWriteOnce]
          resources: {requests: {storage: 1Gi}}
        """,
    "templates/test.yaml": """\
        apiVersion: v1
        kind: Pod
        metadata:
          name: {{ .Release.Name }}-test
          annotations: {helm.sh/hook: test, helm.sh/hook-delete-policy: before-hook-creation}
        spec:
          restartPolicy: Never
          containers: [{name: test, image: registry.invalid/test:1}]
        """,
}


def test_helm_test_hook_pods_complete_and_pvcs_bind(cluster, helm, namespace, tmp_path):
    chart = tmp_path / "probe"
    for name, text in TEST_CHART.items():
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_text(textwrap.dedent(text))
    ns = ["-n", namespace]
    helm("install", "probe", chart, *ns, "--wait", "--timeout", "2m")
    assert cluster.get("pvc/probe-data", *ns)["status"]["phase"] == "Bound"
    t0 = time.monotonic()
    helm("test", "probe", *ns, "--timeout", "1m")
    assert time.monotonic() - t0 < 30, "the helm-test stage should finish the pod at once"
    pod = cluster.get("pod/probe-test", *ns)
    assert pod["status"]["phase"] == "Succeeded"
    helm("uninstall", "probe", *ns, "--wait", "--timeout", "1m")
    assert cluster.get("pvc/probe-data", *ns)["status"]["phase"] == "Bound"  # kept


def cluster_env_for(state: Path, tmp: Path, bin_dir: Path = BIN) -> dict[str, str]:
    env = dict(os.environ, CLUSTER_STATE=str(state), CLUSTER_BIN=str(bin_dir), TMPDIR=str(tmp))
    return env


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if text.encode() in (proc / "cmdline").read_bytes() and pid_alive(int(proc.name)):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_up_is_idempotent_and_down_removes_exactly_what_up_started(tmp_path):
    """A second, independent cluster (own CLUSTER_STATE and TMPDIR) so the session's cluster is untouched."""
    state, tmp = tmp_path / "state", tmp_path / "tmp"
    tmp.mkdir()
    env = cluster_env_for(state, tmp)
    try:
        t0 = time.monotonic()
        run([CLUSTER, "up"], env=env, timeout=300)
        cold = time.monotonic() - t0
        pids = pids_of(state)
        assert len(pids) == 5 and all(pid_alive(p) for p in pids.values())
        rundir = Path((state / "rundir").read_text().strip())
        assert rundir.is_dir() and rundir.parent == tmp
        assert (state / "kubeconfig").is_file()

        t0 = time.monotonic()
        again = run([CLUSTER, "up"], env=env, timeout=60)
        assert "already up" in again.stderr
        assert time.monotonic() - t0 < min(10, cold)
        assert pids_of(state) == pids

        assert run([CLUSTER, "status"], env=env, check=False).returncode == 0
    finally:
        run([CLUSTER, "down"], env=env, timeout=120)
    assert not any(pid_alive(p) for p in pids.values())
    assert not rundir.exists() and not (state / "kubeconfig").exists() and not (state / "pids").exists()
    assert (state / "last-logs" / "kube-apiserver.log").is_file()
    assert run([CLUSTER, "status"], env=env, check=False).returncode != 0
    assert processes_mentioning(str(tmp)) == []


def test_failed_up_tears_down_what_it_started(tmp_path):
    """kube-apiserver dies at start: `up` fails, names it, and leaves no process (etcd ran) and no temp dir."""
    state, tmp, bin_dir = tmp_path / "state", tmp_path / "tmp", tmp_path / "bin"
    tmp.mkdir()
    bin_dir.mkdir()
    for name in ("etcd", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"):
        (bin_dir / name).symlink_to(BIN / name)
    broken = bin_dir / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'apiserver: simulated start failure' >&2\nsleep 1\nexit 3\n")
    broken.chmod(0o755)
    env = cluster_env_for(state, tmp, bin_dir)
    proc = run([CLUSTER, "up"], env=env, check=False, timeout=300)
    assert proc.returncode != 0
    assert "kube-apiserver" in proc.stderr and "exited" in proc.stderr, proc.stderr
    assert "simulated start failure" in (state / "last-logs" / "kube-apiserver.log").read_text()
    assert processes_mentioning(str(tmp)) == []  # etcd (its data dir is under tmp) was stopped
    assert list(tmp.iterdir()) == []
    assert not (state / "pids").exists() and not (state / "kubeconfig").exists()

