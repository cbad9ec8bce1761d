"""The chart's `helm test` script (rendered by `helm template`) against a real MLflow server and real S3 (SeaweedFS).

It must pass when the server can store artifacts, and fail naming the artifact store when it cannot: wrong S3 keys,
an endpoint that does not answer. (A missing bucket is not a case here: SeaweedFS creates a bucket on first write.) Those pass a param-and-metric check and would only surface at the
end of the first real training.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import REPO, S3, free_port, trainer_env

pytestmark = pytest.mark.slow

HELM = REPO / ".tools" / "bin" / "helm"


def rendered_test_pod(tmp_path: Path) -> dict:
    assert os.access(HELM, os.X_OK), f"{HELM} is missing: run `make setup`"
    homes = {f"HELM_{k}_HOME": str(tmp_path / "helm" / k.lower()) for k in ("CONFIG", "CACHE", "DATA")}
    out = subprocess.run([str(HELM), "template", "t", str(REPO / "charts" / "mlflow-stack"), "-n", "ml",
                          "-s", "templates/tests/test-tracking.yaml"], env={**os.environ, **homes},
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    [pod] = [d for d in yaml.safe_load_all(out) if d]
    return pod["spec"]["containers"][0]


def run_helm_test(container: dict, tracking_uri: str) -> subprocess.CompletedProcess:
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update(MLFLOW_TRACKING_URI=tracking_uri, HOME=str(Path.home()))
    return subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", container["args"][0]],
                          env=trainer_env(env), capture_output=True, text=True, timeout=300)  # fmt: skip


BROKEN = {
    # case -> (server environment change, artifact destination)
    "wrong-secret-key": ({"AWS_SECRET_ACCESS_KEY": "not-the-secret-key"}, "s3://helm-test"),
    "endpoint-down": ({"MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}, "s3://helm-test"),
}


@pytest.mark.parametrize("case", ["working", *BROKEN])
def test_helm_test_checks_the_artifact_store(mlflow_server_factory, s3: S3, tmp_path: Path, case: str) -> None:
    buckets = {b["Name"] for b in s3.client().list_buckets().get("Buckets", [])}
    if "helm-test" not in buckets:
        s3.create_bucket("helm-test")
    change, destination = BROKEN.get(case, ({}, "s3://helm-test"))
    server = mlflow_server_factory(artifacts=destination, env={**s3.env, **change})
    result = run_helm_test(rendered_test_pod(tmp_path), server.url)
    if case == "working":
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "its artifact stored, listed and read back" in result.stdout
        assert any(k.endswith("/helm-test/probe.txt") for k in s3.keys("helm-test")), s3.keys("helm-test")
        return
    assert result.returncode != 0, result.stdout[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("helm test FAILED at artifact upload through the server: "), result.stderr[-3000:]
    assert "the server writes artifacts to s3://mlflow: check its S3 keys" in last, last  # the chart's bucket
