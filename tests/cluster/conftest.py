"""Fixtures for the tests against the throwaway control plane (`ci/cluster`, see ci/cluster.d/README.md).

The session's cluster is started by `ci/cluster up` and stopped by `ci/cluster down` at the end, unless it was
already running when the session began (then it is reused and left running: `ci/cluster up` is idempotent).
Nothing here skips: missing tools are a failure that names the command which builds them.
"""

from __future__ import annotations

import pytest
from clusterlib import (CLUSTER, HELMS, ROOT, Cluster, Helm, cluster_env, namespace_name, non_loopback_sockets, pids_of,
                        run, tool)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Cluster:
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"):
        tool(name)
    state = ROOT / ".tools" / "cluster"
    was_up = run([CLUSTER, "status"], check=False).returncode == 0
    run([CLUSTER, "up"], timeout=300)
    c = Cluster(kubeconfig=state / "kubeconfig", state=state,
                env=cluster_env(state / "kubeconfig", tmp_path_factory.mktemp("helm-home")))
    yield c
    # after every test of the session: the control plane still never touched a non-loopback address
    leaks = non_loopback_sockets(pids_of(state))
    if not was_up:
        run([CLUSTER, "down"], timeout=120)
    assert not leaks, f"cluster processes used non-loopback addresses: {leaks}"


@pytest.fixture(scope="session", params=HELMS)
def helm(request, cluster) -> Helm:
    """`helm` (Helm 4) and `helm3` (Helm 3), each checked to be the major version it claims."""
    h = Helm(request.param, tool(request.param), cluster.env)
    version = h("version", "--template", "{{.Version}}").stdout.strip()
    expected = "v4." if request.param == "helm" else "v3."
    assert version.startswith(expected), f"{h.path} is {version}, expected {expected}x"
    return h


@pytest.fixture
def namespace(cluster, request):
    """A fresh namespace per test (deleted afterwards, not waited for)."""
    name = namespace_name(request)
    cluster.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", timeout=180)
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
