"""The bundled object store's container as rendered with the chart's defaults, run for real (rendered.py): `weed` with
the default `objectStore.args` and the S3 keys from the (hook-generated) S3 Secret, `/data` mapped to a test folder.

It runs in a fresh network + mount namespace: only loopback (its fixed ports never meet the machine's), and a private
/tmp (as the pod's emptyDir), because weed puts unix sockets with fixed names there (/tmp/seaweedfs-master-grpc-19333.sock,
...) and would otherwise talk to any other weed on this machine. Then: /healthz on :9000 (the probes' path) answers 200;
boto3 with the keys creates the bucket and round-trips an object; wrong keys are refused; master, volume server and filer
listen on 127.0.0.1 only, and nothing but S3 (HTTP 9000, its gRPC 19000) listens on another address.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from clusterlib import CHART, ROOT, Helm, cluster_env, tool
from rendered import Manifest, container_process

pytestmark = [pytest.mark.cluster]

VENV_BIN = Path(sys.executable).parent
NAMESPACE = "ml"
INNER_WORK = "/tmp/work"  # the test's work folder as the namespace sees it (bound under the private /tmp)

# Inside the namespace: private /tmp, start the container's process, probe it, report facts as JSON (the test asserts).
DRIVER = textwrap.dedent(
    """\
    import json, os, signal, subprocess, sys, time, urllib.request
    nstmp, work, spec_path = sys.argv[1:4]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    os.makedirs(os.path.join(nstmp, "work"), exist_ok=True)
    subprocess.run(["mount", "--bind", work, os.path.join(nstmp, "work")], check=True)
    for keep in sys.argv[4:]:  # folders under /tmp the process needs, e.g. a clone of the repository (its .venv)
        inside = os.path.join(nstmp, os.path.relpath(keep, "/tmp"))
        os.makedirs(inside, exist_ok=True)
        subprocess.run(["mount", "--bind", keep, inside], check=True)
    subprocess.run(["mount", "--rbind", nstmp, "/tmp"], check=True)  # with the work folder bound in it
    spec = json.load(open(spec_path))
    out = {"links": subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout}
    log = open("/tmp/work/objectstore.log", "wb")
    proc = subprocess.Popen(spec["argv"], env=spec["env"], cwd=spec["cwd"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline, out["healthz"] = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                out["healthz"] = urllib.request.urlopen("http://127.0.0.1:9000/healthz", timeout=5).status
                break
            except OSError:
                time.sleep(0.5)
        out["exited"] = proc.poll()
        import boto3
        from botocore.config import Config
        def client(key, secret):
            return boto3.client("s3", endpoint_url="http://127.0.0.1:9000", region_name="us-east-1",
                                aws_access_key_id=key, aws_secret_access_key=secret,
                                config=Config(retries={"max_attempts": 2}))
        key, secret = spec["env"]["AWS_ACCESS_KEY_ID"], spec["env"]["AWS_SECRET_ACCESS_KEY"]
        good = client(key, secret)
        good.create_bucket(Bucket="mlflow")
        good.put_object(Bucket="mlflow", Key="0/run/artifacts/hello.txt", Body=b"hello from the chart's defaults")
        out["object"] = good.get_object(Bucket="mlflow", Key="0/run/artifacts/hello.txt")["Body"].read().decode()
        # volume slots: each collection (the bucket, and the filer's own metadata log) grows 7 volumes at its first
        # write, and S3 writes fail once no slot is left (SeaweedFS's default 30 GB volumes on a disk of tens of GB)
        out["volume_slots"] = json.load(urllib.request.urlopen("http://127.0.0.1:9333/dir/status", timeout=5))[
            "Topology"]["Max"]
        out["refused"] = {}
        for name, (k, s) in {"wrong-secret": (key, secret + "x"), "unknown-key": ("NOSUCHKEY0123456789", secret)}.items():
            try:
                client(k, s).list_objects_v2(Bucket="mlflow")
                out["refused"][name] = None
            except Exception as e:  # the S3 error code, or the exception's name
                out["refused"][name] = getattr(e, "response", {}).get("Error", {}).get("Code") or type(e).__name__
        listeners = []
        for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
            for line in open(table).read().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state != "0A":  # LISTEN
                    continue
                addr, port = local.split(":")
                if width == 8:
                    addr = ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
                else:
                    addr = {"0" * 32: "::", "0" * 24 + "01000000": "::1"}.get(addr, addr)
                listeners.append([addr, int(port, 16)])
        out["listeners"] = sorted(listeners)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # weed may hang on SIGTERM after stopping its servers
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        json.dump(out, open("/tmp/work/result.json", "w"))
    """
)


def test_default_object_store_serves_s3_with_the_secret_keys_and_nothing_else(tmp_path):
    helm = Helm("helm", tool("helm"), cluster_env(tmp_path / "kubeconfig-unused", tmp_path / "helm-home"))
    m = Manifest.parse(helm("template", "mlflow-stack", CHART, "-n", NAMESPACE).stdout, NAMESPACE)
    work = tmp_path / "work"
    work.mkdir()
    store = container_process(m, m.one("Deployment", "-objectstore"), "objectstore", work, VENV_BIN)
    assert Path(store.argv[0]).name == "weed" and store.argv[1] == "server", store
    assert any(a.startswith(f"-dir={work}") for a in store.argv), f"/data not mapped into the test: {store}"
    # the namespace sees the work folder as /tmp/work (under its private /tmp)
    inner = lambda s: s.replace(str(work), INNER_WORK)  # noqa: E731
    spec = {"argv": [inner(a) for a in store.argv], "env": {k: inner(v) for k, v in store.env.items()},
            "cwd": inner(store.cwd) if store.cwd.startswith(str(work)) else INNER_WORK}  # fmt: skip
    (work / "spec.json").write_text(json.dumps(spec))
    nstmp = tmp_path / "nstmp"
    nstmp.mkdir()
    driver = subprocess.run(["unshare", "-n", "-m", "--", str(VENV_BIN / "python"), "-c", DRIVER, str(nstmp), str(work),
                             f"{INNER_WORK}/spec.json", *([str(ROOT)] if ROOT.is_relative_to("/tmp") else [])],
                            capture_output=True, text=True, cwd=ROOT, timeout=240)  # fmt: skip
    log = (work / "objectstore.log").read_text(errors="replace")[-3000:] if (work / "objectstore.log").exists() else ""
    assert driver.returncode == 0, f"{driver.stdout[-2000:]}{driver.stderr[-3000:]}\n--- weed log\n{log}"
    out = json.loads((work / "result.json").read_text())
    assert all(": lo:" in line for line in out["links"].splitlines()), out["links"]

    assert out["healthz"] == 200, f"{out}\n--- weed log\n{log}"
    assert out["object"] == "hello from the chart's defaults"
    assert out["volume_slots"] >= 14, f"{out['volume_slots']} volume slots: fewer than two collections grow (7 each)"
    assert out["refused"]["wrong-secret"] in ("SignatureDoesNotMatch", "AccessDenied"), out["refused"]
    assert out["refused"]["unknown-key"] in ("InvalidAccessKeyId", "AccessDenied"), out["refused"]

    listeners = {(addr, port) for addr, port in out["listeners"]}
    ports = {port for _, port in listeners}
    for name, port in {"master": 9333, "filer": 8888, "volume": 8080, "master gRPC": 19333, "filer gRPC": 18888,
                       "volume gRPC": 18080}.items():  # fmt: skip
        assert port in ports, f"{name} ({port}) not listening at all: {sorted(listeners)}"
        assert {a for a, p in listeners if p == port} == {"127.0.0.1"}, f"{name} ({port}) beyond loopback: {listeners}"
    wide = {(a, p) for a, p in listeners if a not in ("127.0.0.1", "::1")}
    # S3's gRPC (19000) follows -s3.ip.bind: weed 4.48 has no flag to bind it elsewhere (the NetworkPolicy admits 9000 only)
    assert {p for _, p in wide} == {9000, 19000}, f"only S3 may listen beyond loopback: {sorted(wide)}"
