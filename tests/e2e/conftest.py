"""Fixtures of the end-to-end tests: the real node (ci/node) and a release of this commit in the node's registry.

The session brings the node up when it is not up (and takes it down again at the end) and imports the test stand-in
images (PostgreSQL, S3: never released). It then runs `make release ... PUSH=1` against the node's registry with
throwaway GnuPG and cosign keys: the tests install `oci://` charts, and containerd pulls the released images with an
imagePullSecret, as on a real cluster. Where the kernel cannot run a node (`ci/node check` exits 3) the tests skip with
its reason, unless MLFLOW_STACK_REQUIRE_E2E=1 (.ci/run sets it: on CI's machines they must run).
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from cluster.clusterlib import namespace_name
from nodelib import NODE, TORCH_VARIANT, Node, Release, diagnose, image_ref, node_problems, run


@pytest.fixture(scope="session")
def node(tmp_path_factory) -> Node:
    check = run(["bash", NODE, "check"], check=False)
    if check.returncode == 3:
        reason = check.stdout.strip()
        if os.environ.get("MLFLOW_STACK_REQUIRE_E2E") == "1":
            pytest.fail(f"{reason} (MLFLOW_STACK_REQUIRE_E2E=1: the end-to-end tests must run here)", pytrace=False)
        pytest.skip(reason)
    assert check.returncode == 0, check.stdout + check.stderr
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    env.update(HELM_CONFIG_HOME=str(home / "config"), HELM_CACHE_HOME=str(home / "cache"),
               HELM_DATA_HOME=str(home / "data"))  # fmt: skip
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(var, None)
    was_up = run(["bash", NODE, "status"], check=False).returncode == 0
    run(["bash", NODE, "up"], timeout=600)
    run(["bash", NODE, "load", *(image_ref(n) for n in ("postgres", "s3"))], timeout=1800)
    node = Node(env=env)
    # a node that would not start pods fails here with the reason, not as six-minute helm timeouts (a minute's grace:
    # the not-ready taint goes some seconds after Ready)
    deadline = time.monotonic() + 60
    while problems := node_problems(node):
        if time.monotonic() > deadline:
            pytest.fail(f"the node would not run pods: {'; '.join(problems)}\n{diagnose(node, None)}", pytrace=False)
        time.sleep(2)
    yield node
    if not was_up:
        run(["bash", NODE, "down"], timeout=300)


@pytest.fixture(scope="session")
def release(node, tmp_path_factory) -> Release:
    """`make release REGISTRY=<node registry>/mlflow-stack PUSH=1`, signed with keys made here for this session."""
    keys = tmp_path_factory.mktemp("keys")
    registry = dict(line.split("=", 1) for line in run(["bash", NODE, "registry"]).stdout.split())
    gnupg = keys / "gnupg"
    gnupg.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", gnupg, "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    uid = "mlflow-stack CI <ci@mlflow-stack.invalid>"
    run([*gpg, "--quick-gen-key", uid, "rsa3072", "sign", "1d"], timeout=120)
    (keys / "secring.gpg").write_bytes(run_bytes([*gpg, "--export-secret-keys"]))
    (keys / "pubring.gpg").write_bytes(run_bytes([*gpg, "--export"]))
    run(["gpgconf", "--homedir", gnupg, "--kill", "gpg-agent"])  # gpg started it for this home; helm signs without it
    run(["env", "COSIGN_PASSWORD=", "cosign", "generate-key-pair", "--output-key-prefix", keys / "cosign"])
    repo = f"{registry['REGISTRY_HOST']}/mlflow-stack"
    env = {"REGISTRY": repo, "PUSH": "1", "TORCH_VARIANT": TORCH_VARIANT, **registry, "HELM_SIGN_KEY": uid,
           "HELM_KEYRING": keys / "secring.gpg", "COSIGN_KEY": keys / "cosign.key", "COSIGN_PASSWORD": ""}
    out = node.exec("env", *(f"{k}={v}" for k, v in env.items()), "bash", "ci/release.sh", timeout=2700).stdout
    version = out.split("--version ")[1].split()[0]
    return Release(node, registry, repo, version, keys / "pubring.gpg", keys / "cosign.pub")


def run_bytes(cmd) -> bytes:
    return subprocess.run([str(c) for c in cmd], capture_output=True, check=True, timeout=60).stdout


@pytest.fixture
def namespace(node, release, request):
    """A fresh namespace per test with the registry's pull secret `regcred`, enforcing the "restricted" Pod Security
    Standard (the API server refuses any pod of the chart that breaks it); deleted afterwards (waited for, so its pods
    free the node's CPU for the next test)."""
    name = namespace_name(request)
    node.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", timeout=300)
    node.kubectl("create", "namespace", name)
    node.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted",
                 "pod-security.kubernetes.io/enforce-version=latest")  # fmt: skip
    release.pull_secret(name)
    yield name
    # Terminating first (no controller may create a pod in it any more), then its pods stopped at once: their grace
    # periods (the trainer's 120 s, PostgreSQL waiting for its clients) would only make the next test wait. SIGTERM
    # handling is what the tests themselves prove.
    node.kubectl("delete", "namespace", name, "--wait=false", check=False)
    node.kubectl("delete", "pods", "--all", "-n", name, "--force", "--grace-period=0", check=False)
    node.kubectl("wait", "--for=delete", f"namespace/{name}", "--timeout=300s", check=False, timeout=330)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed e2e test reports the node's and its namespace's state with it: CI's log is all there is afterwards."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "node" in item.funcargs:
        report.sections.append(("real node at the failure", diagnose(item.funcargs["node"],
                                                                    item.funcargs.get("namespace"))))  # fmt: skip
