"""The bucket hook Job's container, run for real as rendered (rendered.py), against SeaweedFS S3 or no S3 at all.

- An existing S3 Secret that holds only the keys (as a MinIO user creates it) plus `artifacts.s3.endpointUrl`: the hook
  (and, through the same env, the server and the Job) must talk to that endpoint, not AWS. Runs in a loopback-only
  network namespace (netns_run.py) where the endpoint's DNS name maps to 127.0.0.1.
- No credentials anywhere (`objectStore.enabled=false`, an own bucket, no keys): the hook must fail with one line that
  says what to set, not a NoCredentialsError traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from clusterlib import CHART, ROOT, Helm, cluster_env, tool
from rendered import Manifest, Process, container_process

pytestmark = [pytest.mark.cluster]

VENV_BIN = Path(sys.executable).parent
NAMESPACE = "ml"
S3_HOST, S3_PORT = "s3.storage.svc.cluster.local", 8333
KEYS = {"AWS_ACCESS_KEY_ID": "hook-test-key", "AWS_SECRET_ACCESS_KEY": "hook-test-secret-key"}


def render(tmp_path: Path, *sets: str, extra_docs: str = "") -> Manifest:
    helm = Helm("helm", tool("helm"), cluster_env(tmp_path / "kubeconfig-unused", tmp_path / "helm-home"))
    args = [a for s in ("training.enabled=false", "artifacts.createBucket.timeoutSeconds=20", *sets) for a in ("--set", s)]
    text = helm("template", "mlflow-stack", CHART, "-n", NAMESPACE, *args).stdout
    return Manifest.parse(text + extra_docs, NAMESPACE)


def test_hook_uses_the_endpoint_of_the_values_with_an_existing_keys_only_secret(tmp_path):
    secret = "---\n" + json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "minio-keys"},
                                   "stringData": KEYS})  # fmt: skip
    m = render(tmp_path, "objectStore.enabled=false", "artifacts.bucket=hook-bucket",
               "artifacts.s3.existingSecret=minio-keys", f"artifacts.s3.endpointUrl=http://{S3_HOST}:{S3_PORT}",
               extra_docs=secret)  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    hook = container_process(m, m.one("Job", "-create-bucket"), "create-bucket", work, VENV_BIN)
    path = f"{VENV_BIN}:/usr/bin:/bin"
    check = Process("check", [str(VENV_BIN / "python"), "-c",
                              f"import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:{S3_PORT}')"
                              ".head_bucket(Bucket='hook-bucket')"], {"PATH": path, **KEYS}, str(work))  # fmt: skip
    s3 = Process("s3", [str(VENV_BIN / "weed"), "mini", f"-dir={work / 's3'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                        f"-s3.port={S3_PORT}", "-admin.ui=false"], {"PATH": path, **KEYS}, str(work))  # fmt: skip
    s3_up = [str(VENV_BIN / "python"), "-c",
             f"import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:{S3_PORT}').list_buckets()"]
    steps = [
        {"kind": "daemon", "process": s3.to_json(), "ready": {"argv": s3_up}, "timeout": 120},
        {"kind": "run", "process": hook.to_json(), "timeout": 120},
        {"kind": "run", "process": check.to_json(), "timeout": 60},
    ]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"hosts": [S3_HOST], "workdir": str(work), "result": str(tmp_path / "steps.json"),
                                "steps": steps}))  # fmt: skip
    driver = subprocess.run(["unshare", "-n", "-m", "--", str(VENV_BIN / "python"),
                             str(Path(__file__).parent / "netns_run.py"), str(plan)],
                            capture_output=True, text=True, cwd=ROOT, timeout=400)  # fmt: skip
    results = json.loads((tmp_path / "steps.json").read_text()) if (tmp_path / "steps.json").exists() else []
    assert driver.returncode == 0, f"{json.dumps(results, indent=1)}\n{driver.stdout[-2000:]}{driver.stderr[-2000:]}"
    assert hook.env["MLFLOW_S3_ENDPOINT_URL"] == f"http://{S3_HOST}:{S3_PORT}"


def test_hook_without_credentials_says_what_to_set(tmp_path):
    m = render(tmp_path, "objectStore.enabled=false", "artifacts.bucket=my-own-bucket")
    work = tmp_path / "work"
    work.mkdir()
    hook = container_process(m, m.one("Job", "-create-bucket"), "create-bucket", work, VENV_BIN)
    # a node without any AWS credentials: no instance metadata, no config files
    env = {**hook.env, "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(work / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(work / "none")}  # fmt: skip
    result = subprocess.run(hook.argv, env=env, cwd=hook.cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("create-bucket: no S3 credentials"), line
    assert "artifacts.s3.existingSecret" in line and "objectStore.enabled=true" in line, line
