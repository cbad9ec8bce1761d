"""Runs the tracking server exactly as a rendered chart configures it, on 127.0.0.1, with the mlflow of .venv.

Usage: python run_rendered.py RENDERED.yaml WORKDIR [FROM=TO ...]

FROM=TO pairs rewrite text in args and env, e.g. the bundled PostgreSQL's Service address to a local server's
(`t-mlflow-stack-postgresql.ml.svc.cluster.local:5432=127.0.0.1:54329`).

Takes the server Deployment of a `helm template` output (SQLite backend): runs its db-upgrade init container script, then
`mlflow server` with the chart's args and env (Secrets and the basic-auth ConfigMap resolved from the same render), and
checks what a cluster would see:
  - the Service DNS names the chart puts in --allowed-hosts are accepted, an unknown Host gets 403;
  - with basic auth, anonymous API calls get 401 and the generated admin password works;
  - the `helm test` pod's script (from the render) passes: /health, a run with a param and a metric logged and read back.
With SMOKE_TRAIN=1 it also runs the rendered training Job's containers (init container, then `trainer train` with the
Job's TRAINER_* environment and the downward-API values filled in) against that server, and checks the finished run.
Cluster-only parts are rewritten: /mlflow-data -> WORKDIR, port 5000 -> a free local port, bind 127.0.0.1, and
the S3 artifact destination -> a local directory (no S3 here).
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml


def find(docs, kind, component):
    for doc in docs:
        labels = doc.get("metadata", {}).get("labels", {})
        if doc.get("kind") == kind and labels.get("app.kubernetes.io/component") == component:
            return doc
    raise SystemExit(f"smoke: no {kind} with component {component} in the render")


def resolve_env(env_list, docs, rewrite):
    """EnvVar list -> dict; secretKeyRef values come from the Secrets in the same render."""
    secrets = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "Secret"}
    env = {}
    for item in env_list or []:
        if "value" in item:
            env[item["name"]] = rewrite(str(item["value"]))
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
    return env


def request(url, host=None, auth=None):
    req = urllib.request.Request(url)
    if host:
        req.add_header("Host", host)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def train(docs, work: Path, base: str, base_env: dict, rewrite) -> None:
    """Runs the rendered training Job's containers locally (the image's entrypoint is `trainer`) and checks the run."""
    job = find(docs, "Job", "training")
    spec = job["spec"]["template"]["spec"]
    workspace = work / "workspace"
    workspace.mkdir(exist_ok=True)
    trainer = str(Path(sys.executable).with_name("trainer"))
    fake_downward = {"KUBERNETES_JOB_NAME": job["metadata"]["name"], "KUBERNETES_POD_NAME": job["metadata"]["name"] + "-smoke",
                     "KUBERNETES_NAMESPACE": "ml", "KUBERNETES_NODE_NAME": "smoke-node"}

    def fix(text: str) -> str:
        return rewrite(text).replace("/workspace", str(workspace))

    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        env = {**base_env, **{k: fix(v) for k, v in resolve_env(c.get("env"), docs, rewrite).items()}, **fake_downward}
        if c["name"] == "trainer":
            env["MLFLOW_TRACKING_URI"] = base
        subprocess.run([trainer, *[fix(a) for a in c["args"]]], env=env, cwd=workspace, check=True, timeout=900)

    from mlflow import MlflowClient

    client = MlflowClient(base)
    trainer_env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    exp = client.get_experiment_by_name(trainer_env["MLFLOW_EXPERIMENT_NAME"])
    run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    epochs = int(trainer_env["TRAINER_EPOCHS"])
    assert run.info.status == "FINISHED", run.info.status
    assert run.data.tags.get("k8s.job") == job["metadata"]["name"], run.data.tags
    assert run.data.tags.get("image") == trainer_env["TRAINER_IMAGE"], run.data.tags
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "metrics/mAP_0.5")]
    assert steps == list(range(epochs)), steps
    print(f"smoke: training Job ran as rendered: run {run.info.run_id} FINISHED in experiment "
          f"{exp.name!r}, {epochs} epochs logged, tags k8s.job/image from the Job")


def main() -> int:
    rendered, work = Path(sys.argv[1]), Path(sys.argv[2])
    mappings = [m.split("=", 1) for m in sys.argv[3:]]
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    deploy = find(docs, "Deployment", "server")
    pod = deploy["spec"]["template"]["spec"]
    init, main_c = pod["initContainers"][0], pod["containers"][0]
    data, artifacts = work / "data", work / "artifacts"
    data.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def rewrite(text: str) -> str:
        for old, new in [("/mlflow-data", str(data)), *mappings]:
            text = text.replace(old, new)
        return text

    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    # db-upgrade init container: its own script and env.
    init_env = dict(base_env, **resolve_env(init["env"], docs, rewrite))
    subprocess.run([*init["command"], init["args"][0]], env=init_env, check=True, timeout=300)

    args = []
    for arg in main_c["args"]:
        if arg.startswith("--artifacts-destination="):
            arg = f"--artifacts-destination={artifacts}"
        elif arg == "--port=5000":
            arg = f"--port={port}"
        elif arg == "--host=0.0.0.0":
            arg = "--host=127.0.0.1"
        args.append(rewrite(arg))
    env = dict(base_env, **resolve_env(main_c["env"], docs, rewrite))
    if "MLFLOW_AUTH_CONFIG_PATH" in env:  # the ConfigMap the chart mounts at /etc/mlflow-auth
        cm = next(d for d in docs if d.get("kind") == "ConfigMap" and d["metadata"]["name"].endswith("-auth"))
        ini = work / "basic_auth.ini"
        ini.write_text(rewrite(cm["data"]["basic_auth.ini"]))
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
    prefix = next((a.split("=", 1)[1] for a in args if a.startswith("--static-prefix=")), "")
    base = f"http://127.0.0.1:{port}{prefix}"
    log = (work / "server.log").open("w")
    server = subprocess.Popen([*main_c["command"], *args], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(180):
            if server.poll() is not None:
                raise SystemExit(f"smoke: mlflow server exited {server.returncode}; see {work}/server.log")
            if request(f"{base}/health") == 200:
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"smoke: {base}/health never answered; see {work}/server.log")

        allowed = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
        service_hosts = [h for h in allowed if "*" not in h and not h.startswith(("localhost", "127."))]
        auth = (env["MLFLOW_AUTH_ADMIN_USERNAME"], env["MLFLOW_AUTH_ADMIN_PASSWORD"]) if "MLFLOW_AUTH_ADMIN_PASSWORD" in env else None
        api = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        for host in service_hosts:
            status = request(api, host=host, auth=auth)
            assert status == 200, f"Host {host} (in --allowed-hosts) got {status}"
        status = request(api, host="evil.example.com", auth=auth)
        assert status == 403, f"unknown Host got {status}, expected 403"
        print(f"smoke: {len(service_hosts)} Service hosts accepted, unknown Host refused (403)")
        if auth:
            assert request(api) == 401, "anonymous API call was not refused"
            print("smoke: basic auth refuses anonymous calls and accepts the generated admin password")

        test_pod = find(docs, "Pod", "test")["spec"]["containers"][0]
        test_env = {**base_env, **resolve_env(test_pod["env"], docs, rewrite), "MLFLOW_TRACKING_URI": base}
        subprocess.run([sys.executable, "-c", test_pod["args"][0]], env=test_env, check=True, timeout=120)
        if os.environ.get("SMOKE_TRAIN") == "1":
            train(docs, work, base, base_env, rewrite)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
