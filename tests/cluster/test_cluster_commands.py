"""The chart's own commands, run for real (kwok runs no container, so the lifecycle tests cannot show them working).

The bundled-PostgreSQL scenario (with basic auth and the synthetic dataset) is rendered by `helm template`; then, in a
network namespace with only loopback and the Service DNS names mapped to 127.0.0.1 (netns_run.py), in the order the
cluster would run them:
  PostgreSQL (Debian's, initialised like the postgres image does from the StatefulSet's env) and SeaweedFS S3 (`weed mini`
  in place of the bundled `weed server`, same credentials, same port) -> the create-bucket hook Job's container -> the server
  Deployment's db-upgrade and auth-admin init containers -> the server container (`mlflow server ...` as rendered) -> the `helm test`
  pod's container -> the training Job's make-dataset init container and trainer container.
Every command, argument, environment variable (from the rendered Secrets/ConfigMaps) and Service URI is the rendered
one; only volume mount paths that do not exist here are redirected (rendered.py). Then: the run is FINISHED with one
value per epoch for each metric, its artifacts are in S3, and MLflow's host check accepts the in-cluster Host header
but refuses a foreign one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from clusterlib import CHART, ROOT, Helm, cluster_env, tool
from rendered import Manifest, Process, container_env, container_process

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

VENV_BIN = Path(sys.executable).parent
NAMESPACE = "ml"
EPOCHS = 2
VALUES = [
    "--set", "server.auth.enabled=true",
    "--set", "training.dataset.synthetic=true",
    "--set", f"training.params.epochs={EPOCHS}",
    "--set", "training.params.imgsz=128",
    "--set", "training.params.batchSize=8",
    "--set", "training.params.weights=",
    "--set", "training.params.cfg=yolov5n.yaml",
    "--set", "training.params.device=cpu",
    "--set", "training.params.workers=0",
    "--set", "training.params.systemMetrics=false",
    "--set", "training.experiment=chart-commands",
]  # fmt: skip

CHECK = textwrap.dedent(
    """\
    import base64, json, os, sys, urllib.error, urllib.request
    import boto3
    from mlflow import MlflowClient

    out = {}
    def status(host):  # an API call (/health and /version are exempt from the host check)
        headers = {"Host": host}
        if os.environ.get("MLFLOW_TRACKING_USERNAME"):
            creds = f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ['MLFLOW_TRACKING_PASSWORD']}"
            headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
        url = "http://127.0.0.1:5000/api/2.0/mlflow/experiments/search?max_results=1"
        req = urllib.request.Request(url, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=10).status
        except urllib.error.HTTPError as e:
            return e.code
    out["host_status"] = {h: status(h) for h in sys.argv[2:]}
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"])
    runs = client.search_runs([exp.experiment_id]) if exp else []
    out["runs"] = []
    for r in runs:
        hist = {k: [m.step for m in client.get_metric_history(r.info.run_id, k)] for k in r.data.metrics}
        arts, todo = [], [""]
        while todo:
            for f in client.list_artifacts(r.info.run_id, todo.pop() or None):
                (todo.append(f.path) if f.is_dir else arts.append(f.path))
        out["runs"].append({"status": r.info.status, "steps": hist, "artifacts": arts, "tags": r.data.tags,
                            "artifact_uri": r.info.artifact_uri})
    s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=os.environ["BUCKET"])
    out["s3_keys"] = [o["Key"] for p in pages for o in p.get("Contents", [])]
    open(sys.argv[1], "w").write(json.dumps(out))
    """
)


def step(kind: str, process: Process, **extra) -> dict:
    return {"kind": kind, "process": process.to_json(), **extra}


def simple(name: str, argv: list[str], env: dict[str, str], cwd: str) -> Process:
    return Process(name, argv, {"PATH": f"{VENV_BIN}:/usr/bin:/bin", **env}, cwd)


def pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    assert found, f"PostgreSQL's {name} not found: run `make setup`"
    return str(found)


def test_rendered_commands_train_against_real_postgres_s3_and_mlflow(tmp_path):
    assert shutil.which("unshare"), "unshare (util-linux) is needed for the loopback-only namespace"
    helm = Helm("helm", tool("helm"), cluster_env(tmp_path / "kubeconfig-unused", tmp_path / "helm-home"))
    text = helm("template", "mlflow-stack", CHART, "-n", NAMESPACE, "-f", CHART / "ci" / "postgres-bundled-values.yaml",
                *VALUES).stdout  # fmt: skip
    m = Manifest.parse(text, NAMESPACE)
    work = tmp_path / "work"
    work.mkdir()

    server = m.one("Deployment", "mlflow-stack")
    postgres = m.one("StatefulSet", "-postgresql")
    store = m.one("Deployment", "-objectstore")
    bucket_job = m.one("Job", "-create-bucket")
    [train_job] = [j for j in m.by_kind("Job") if "-train-" in j["metadata"]["name"]]
    [test_pod] = m.by_kind("Pod")

    # PostgreSQL as the postgres image would set it up from the StatefulSet's env (POSTGRES_USER/PASSWORD/DB)
    pg_env = container_env(m, postgres, "postgresql")
    pg_dir = Path(tempfile.mkdtemp(prefix="mlflow-stack-chartpg-"))  # outside tmp_path: the postgres user needs it
    try:
        (pg_dir / "pw").write_text(pg_env["POSTGRES_PASSWORD"] + "\n")
        shutil.chown(pg_dir, "postgres")
        shutil.chown(pg_dir / "pw", "postgres")
        pg_port = next(p["port"] for p in m.one("Service", "-postgresql")["spec"]["ports"])
        s3_port = next(p["port"] for p in m.one("Service", "-objectstore")["spec"]["ports"] if p["port"] != 9001)
        store_env = container_env(m, store, "objectstore")
        s3_env = {k: store_env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        trainer = container_process(m, train_job, "trainer", work, VENV_BIN)
        bucket = container_process(m, bucket_job, "create-bucket", work, VENV_BIN)
        check_env = {**trainer.env, "BUCKET": bucket.env["BUCKET"]}
        svc = m.one("Service", "mlflow-service")["metadata"]["name"]
        hosts = [f"{svc}.{NAMESPACE}.svc.cluster.local:5000", f"{svc}:5000", "evil.example.com"]
        result_file = tmp_path / "check.json"

        steps = [
            step("run", simple("initdb", [pg_bin("initdb"), "-D", str(pg_dir / "data"), "-U", pg_env["POSTGRES_USER"],
                                          "--pwfile", str(pg_dir / "pw"), "-A", "scram-sha-256"], {}, str(pg_dir)),
                 user="postgres"),  # fmt: skip
            step("daemon", simple("postgres", [pg_bin("postgres"), "-D", str(pg_dir / "data"), "-h", "127.0.0.1",
                                               "-p", str(pg_port), "-k", str(pg_dir), "-c", "fsync=off"], {}, str(pg_dir)),
                 user="postgres", ready={"tcp": pg_port}, timeout=60),  # fmt: skip
            step("run", simple("createdb", [str(VENV_BIN / "python"), "-c",
                 "import os, psycopg2; c = psycopg2.connect(host='127.0.0.1', port=int(os.environ['PORT']), "
                 "user=os.environ['POSTGRES_USER'], password=os.environ['POSTGRES_PASSWORD'], dbname='postgres'); "
                 "c.autocommit = True; c.cursor().execute('CREATE DATABASE \"%s\"' % os.environ['POSTGRES_DB'])"],
                 {**pg_env, "PORT": str(pg_port)}, str(work))),  # fmt: skip
            step("daemon", simple("s3", [str(VENV_BIN / "weed"), "mini", f"-dir={work / 's3'}", "-ip=127.0.0.1",
                                         "-ip.bind=127.0.0.1", f"-s3.port={s3_port}", "-admin.ui=false"], s3_env, str(work)),
                 ready={"argv": [str(VENV_BIN / "python"), "-c",
                                 f"import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:{s3_port}', "
                                 "region_name='us-east-1').list_buckets()"]}, timeout=120),  # fmt: skip
            step("run", bucket, timeout=120),
            step("run", container_process(m, server, "db-upgrade", work, VENV_BIN), timeout=180),
            step("run", container_process(m, server, "auth-admin", work, VENV_BIN), timeout=180),
            # ready as in the cluster: its /health answers (the readiness probe)
            step("daemon", container_process(m, server, "mlflow", work, VENV_BIN), timeout=180,
                 ready={"argv": [str(VENV_BIN / "python"), "-c",
                                 "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health')"]}),
            step("run", container_process(m, test_pod, test_pod["spec"]["containers"][0]["name"], work, VENV_BIN),
                 timeout=120),  # fmt: skip
            step("run", container_process(m, train_job, "make-dataset", work, VENV_BIN), timeout=120),
            step("run", trainer, timeout=600),
            step("run", Process("check", [str(VENV_BIN / "python"), "-c", CHECK, str(result_file), *hosts],
                                check_env, str(work))),  # fmt: skip
        ]
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps({"hosts": m.service_hosts(), "workdir": str(work), "result": str(tmp_path / "steps.json"),
                                    "steps": steps}))  # fmt: skip
        driver = subprocess.Popen(["unshare", "-n", "-m", "--", str(VENV_BIN / "python"),
                                   str(Path(__file__).parent / "netns_run.py"), str(plan)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)  # fmt: skip
        try:
            output, _ = driver.communicate(timeout=840)
        finally:
            if driver.poll() is None:  # timed out (or pytest-timeout fired): the driver stops its daemons on SIGTERM
                driver.terminate()
                output, _ = driver.communicate(timeout=60)
        results = json.loads((tmp_path / "steps.json").read_text()) if (tmp_path / "steps.json").exists() else []
        assert driver.returncode == 0, f"{json.dumps(results, indent=1)}\n{output[-3000:]}"
    finally:
        shutil.rmtree(pg_dir, ignore_errors=True)

    out = json.loads(result_file.read_text())
    in_cluster, short, foreign = hosts
    assert out["host_status"][in_cluster] == 200, out["host_status"]
    assert out["host_status"][short] == 200, out["host_status"]
    assert out["host_status"][foreign] == 403, out["host_status"]

    [train_run] = [r for r in out["runs"] if r["tags"].get("mlflow.runName", "").startswith("yolov5-")] or [None]
    assert train_run, f"no training run in {[r['tags'].get('mlflow.runName') for r in out['runs']]}"
    assert train_run["status"] == "FINISHED"
    assert train_run["steps"], "no metrics"
    per_epoch = {k: v for k, v in train_run["steps"].items() if len(v) > 1}
    assert per_epoch, train_run["steps"]
    for name, steps_logged in per_epoch.items():
        assert sorted(steps_logged) == list(range(EPOCHS)), (name, steps_logged)
    assert any(a.startswith("logs/") for a in train_run["artifacts"]), train_run["artifacts"]
    assert "training-output/weights/best.pt" in train_run["artifacts"], train_run["artifacts"]
    assert any(k.endswith("training-output/weights/best.pt") for k in out["s3_keys"]), out["s3_keys"][:20]
