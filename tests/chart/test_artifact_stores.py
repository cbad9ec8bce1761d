"""`artifacts.type: gcs` and `azure` as the chart renders them, against real storage APIs on 127.0.0.1: Azurite
(Microsoft's Azure Storage emulator, npm, `ci/install-npm-tools.sh`) and gcp-storage-emulator (PyPI) for Cloud Storage.

For each scenario (`ci/artifacts-gcs-values.yaml`, `ci/artifacts-azure-values.yaml`) the rendered bucket hook creates
the bucket/container (and finds it on a second run), the rendered `mlflow server` (its args and env, the existing
Secret resolved as the kubelet would) proxies artifacts into the store, the rendered `helm test` script passes, a
9 MiB artifact (Cloud Storage's resumable upload) goes up and comes back, every object is in the emulator under the
chart's prefix, and `mlflow gc` removes a deleted run's objects through the server's proxy.
Not run: the db-upgrade init container and basic auth (the chart-test smokes run those; the server creates a new
SQLite store itself), one uvicorn worker instead of two (a server start costs tens of seconds on 2 busy cores).
What is rewritten: the pod's bind address and port, the SQLite path, the key file's mount path, and for Cloud Storage
the endpoint (`STORAGE_EMULATOR_HOST`, which also makes google-cloud-storage skip authentication: the key file's
mount and `GOOGLE_APPLICATION_CREDENTIALS` are checked, not a login with it). Azure's endpoint comes from the Secret's
connection string, as a user's would; a wrong account key there is refused by Azurite and named by the hook.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml
from mlflow.tracking import MlflowClient

from harness import BIN, REPO, Proc, free_port, http_ok, trainer_env, wait_until

HELM = REPO / ".tools" / "bin" / "helm"
AZURITE = REPO / ".tools" / "npm" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
CHART = REPO / "charts" / "mlflow-stack"
# Azurite's well-known development account (documented by Microsoft, not a secret)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _smoke_module():  # noqa: ANN202 - charts/mlflow-stack/tests/smoke/run_rendered.py: resolve_env, as the smokes use it
    spec = importlib.util.spec_from_file_location("run_rendered", CHART / "tests" / "smoke" / "run_rendered.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Store:
    """One emulator: the existing Secret a user would create for it, and how to list what it holds."""

    kind: str
    secret: dict
    extra_env: dict[str, str]
    list_keys: Callable[[str], list[str]]
    bucket_exists: Callable[[str], bool]
    port: int
    proc: Proc | None = field(default=None, repr=False)


def _secret(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}  # fmt: skip


def azure_connection_string(port: int, key: str = AZURITE_KEY) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};")  # fmt: skip


@contextlib.contextmanager
def start_azurite() -> Iterator[Store]:
    if not os.access(AZURITE, os.X_OK):
        raise RuntimeError(f"{AZURITE} is missing: run `make setup` (ci/install-npm-tools.sh)")
    from azure.storage.blob import BlobServiceClient

    root = Path(tempfile.mkdtemp(prefix="mlflow-stack-azurite-"))
    port = free_port()
    conn = azure_connection_string(port)
    # --skipApiVersionCheck: the pinned azure-storage-blob may speak a newer REST version than this Azurite knows
    proc = Proc([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(root / "data"),
                 "--skipApiVersionCheck", "--disableTelemetry"], root / "azurite.log")  # fmt: skip
    service = BlobServiceClient.from_connection_string(conn)

    def keys(container: str) -> list[str]:
        return sorted(b.name for b in service.get_container_client(container).list_blobs())

    try:
        wait_until(lambda: list(service.list_containers()) is not None, 60, "azurite", proc)
        yield Store("azure", _secret("mlflow-azure-storage", {"AZURE_STORAGE_CONNECTION_STRING": conn}), {}, keys,
                    lambda c: service.get_container_client(c).exists(), port, proc)  # fmt: skip
    finally:
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def start_gcs_emulator() -> Iterator[Store]:
    from google.cloud import storage

    root = Path(tempfile.mkdtemp(prefix="mlflow-stack-gcs-"))
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = Proc([str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
                root / "gcs.log")  # fmt: skip
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint  # this process's client only; restored below
    try:
        client = storage.Client(project="test")
        wait_until(lambda: list(client.list_buckets()) is not None, 60, "gcp-storage-emulator", proc)
        # a service-account key file in the shape Google issues (the emulator never checks it)
        key = '{"type": "service_account", "project_id": "mlflow-demo-project", "client_email": "mlflow@mlflow-demo-project.iam.gserviceaccount.com"}'
        yield Store("gcs", _secret("mlflow-gcs-key", {"key.json": key}), {"STORAGE_EMULATOR_HOST": endpoint},
                    lambda b: sorted(blob.name for blob in client.list_blobs(b)),
                    lambda b: client.lookup_bucket(b) is not None, port, proc)  # fmt: skip
    finally:
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)


STARTERS = {"gcs": start_gcs_emulator, "azure": start_azurite}


@pytest.fixture(scope="module", params=["gcs", "azure"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    with STARTERS[request.param]() as started:
        yield started


def render(tmp_path: Path, kind: str, *sets: str) -> list[dict]:
    assert os.access(HELM, os.X_OK), f"{HELM} is missing: run `make setup`"
    homes = {f"HELM_{k}_HOME": str(tmp_path / "helm" / k.lower()) for k in ("CONFIG", "CACHE", "DATA")}
    out = subprocess.run([str(HELM), "template", "mlflow", str(CHART), "-n", "ml",
                          "-f", str(CHART / "ci" / f"artifacts-{kind}-values.yaml"), "--set", "server.auth.enabled=false",
                          "--set", "server.workers=1",
                          *[a for s in sets for a in ("--set", s)]],
                         env={**os.environ, **homes}, capture_output=True, text=True, check=True).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d]


def component(docs: list[dict], kind: str, name: str) -> dict:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["labels"]["app.kubernetes.io/component"] == name]
    return doc


class Rendered:
    """The render's pods as local processes: env resolved from the (existing) Secrets, Secret volumes written out."""

    def __init__(self, docs: list[dict], store: Store, work: Path) -> None:
        self.docs, self.store, self.work = docs + [store.secret], store, work
        self.smoke = _smoke_module()
        self.data = work / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.server_pod = component(docs, "Deployment", "server")["spec"]["template"]["spec"]
        self.hook_pod = component(docs, "Job", "artifacts")["spec"]["template"]["spec"]
        self.mounts = self.smoke.secret_mounts(self.server_pod, self.docs, work) + self.smoke.secret_mounts(
            self.hook_pod, self.docs, work)

    def rewrite(self, text: str) -> str:
        for old, new in [("/mlflow-data", str(self.data)), *self.mounts]:
            text = text.replace(old, new)
        return text

    def env(self, container: dict) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "AZURE_", "GOOGLE_"))}
        return {**base, **self.smoke.resolve_env(container, self.docs, self.rewrite), **self.store.extra_env,
                "MLFLOW_DISABLE_TELEMETRY": "true", "NO_PROXY": "*"}  # fmt: skip

    def run_hook(self, env_change: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        [c] = self.hook_pod["containers"]
        env = {**self.env(c), **(env_change or {})}
        return subprocess.run([*c["command"], *c["args"]], env=env, capture_output=True, text=True, timeout=300,
                              executable=str(BIN / "python"))  # fmt: skip

    @contextlib.contextmanager
    def server(self) -> Iterator[str]:
        c = self.server_pod["containers"][0]
        port = free_port()
        args = [self.rewrite(a.replace("--port=5000", f"--port={port}").replace("--host=0.0.0.0", "--host=127.0.0.1"))
                for a in c["args"]]  # fmt: skip
        proc = Proc([str(BIN / "mlflow"), *c["command"][1:], *args], self.work / "server.log", self.env(c))
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http_ok(url + "/health"), 300, "mlflow server", proc)
            yield url
        finally:
            proc.stop(signal.SIGTERM)

    def helm_test(self, url: str) -> subprocess.CompletedProcess:
        pod = self.smoke.tracking_test(self.docs)["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in pod["env"] if "value" in e}
        env.update(MLFLOW_TRACKING_URI=url, HOME=str(Path.home()))
        return subprocess.run([str(BIN / "python"), "-c", pod["args"][0]], env=trainer_env(env), capture_output=True,
                              text=True, timeout=300)  # fmt: skip


def test_rendered_pods_use_the_store(store: Store, tmp_path: Path) -> None:
    bucket = f"mlflow-{uuid.uuid4().hex[:8]}"
    rendered = Rendered(render(tmp_path, store.kind, f"artifacts.bucket={bucket}"), store, tmp_path)
    server_env = rendered.env(rendered.server_pod["containers"][0])
    assert not [k for k in server_env if k.startswith(("AWS_", "MLFLOW_S3"))], server_env  # no S3 settings leak in
    if store.kind == "gcs":  # the key file, mounted where GOOGLE_APPLICATION_CREDENTIALS says, is the Secret's
        assert Path(server_env["GOOGLE_APPLICATION_CREDENTIALS"]).read_text() == base64.b64decode(
            store.secret["data"]["key.json"]).decode()
        assert server_env["GOOGLE_CLOUD_PROJECT"] == "mlflow-demo-project"

    assert not store.bucket_exists(bucket)
    first = rendered.run_hook()
    assert first.returncode == 0, first.stdout + first.stderr
    noun = "container" if store.kind == "azure" else "bucket"
    assert f"{noun} {bucket} created" in first.stdout, first.stdout
    assert store.bucket_exists(bucket)
    again = rendered.run_hook()
    assert again.returncode == 0 and f"{noun} {bucket} exists" in again.stdout, again.stdout + again.stderr

    with rendered.server() as url:
        result = rendered.helm_test(url)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "its artifact stored, listed and read back" in result.stdout
        keys = store.list_keys(bucket)
        assert any(k.startswith("runs/") and k.endswith("/helm-test/probe.txt") for k in keys), keys

        client = MlflowClient(url)
        exp = client.create_experiment(f"stores-{uuid.uuid4().hex[:6]}")
        run = client.create_run(exp)
        big = tmp_path / "weights.bin"
        big.write_bytes(os.urandom(9 * 1024 * 1024))  # over google-cloud-storage's 8 MiB multipart limit: resumable
        client.log_artifact(run.info.run_id, str(big), "model")
        [listed] = client.list_artifacts(run.info.run_id, "model")
        assert (listed.path, listed.file_size) == ("model/weights.bin", big.stat().st_size)
        back = Path(client.download_artifacts(run.info.run_id, "model/weights.bin", str(tmp_path / "back")))
        assert back.read_bytes() == big.read_bytes()
        ours = [k for k in store.list_keys(bucket) if f"/{run.info.run_id}/" in k]
        assert ours == [f"runs/{exp}/{run.info.run_id}/artifacts/model/weights.bin"], ours

        client.delete_run(run.info.run_id)
        backend = next(a.split("=", 1)[1] for a in rendered.server_pod["containers"][0]["args"]
                       if a.startswith("--backend-store-uri="))  # fmt: skip
        gc = subprocess.run([str(BIN / "mlflow"), "gc", "--backend-store-uri", rendered.rewrite(backend),
                             "--tracking-uri", url, "--run-ids", run.info.run_id],
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
        assert gc.returncode == 0, gc.stderr[-2000:]
        assert not [k for k in store.list_keys(bucket) if f"/{run.info.run_id}/" in k], store.list_keys(bucket)
        assert any(k.endswith("/helm-test/probe.txt") for k in store.list_keys(bucket))  # other runs are left alone


def test_hook_names_what_is_wrong(store: Store, tmp_path: Path) -> None:
    """Azure: a wrong account key in the connection string (Azurite checks the signature); Cloud Storage: an endpoint
    that does not answer (the emulator checks no credentials), after artifacts.createBucket.timeoutSeconds."""
    rendered = Rendered(render(tmp_path, store.kind, "artifacts.createBucket.timeoutSeconds=10"), store, tmp_path)
    if store.kind == "azure":
        wrong = base64.b64encode(b"not the account key" * 3).decode()
        result = rendered.run_hook({"AZURE_STORAGE_CONNECTION_STRING": azure_connection_string(store.port, wrong)})
        expected = "create-bucket: Azure credentials refused or missing: set artifacts.azure.existingSecret"
    else:
        result = rendered.run_hook({"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}"})
        expected = "create-bucket: Cloud Storage not reachable (artifacts.createBucket.timeoutSeconds)"
    assert result.returncode != 0, result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(expected), result.stderr[-3000:]
