"""Runs the tracking server exactly as a rendered chart configures it, on 127.0.0.1, with the mlflow of .venv.

Usage: python run_rendered.py RENDERED.yaml WORKDIR [FROM=TO ...]

FROM=TO pairs rewrite text in args and env, e.g. the bundled PostgreSQL's Service address to a local server's
(`t-mlflow-stack-postgresql.ml.svc.cluster.local:5432=127.0.0.1:54329`).

Takes the server Deployment of a `helm template` output: runs its init containers (db-upgrade, auth-admin), then
`mlflow server` with the chart's args and env (Secrets and the basic-auth ConfigMap resolved from the same render, plus
the Secrets the credentials hook would create, with random values: ci/lib/hook_secrets.py), and
checks what a cluster would see:
  - the Service DNS names the chart puts in --allowed-hosts are accepted, an unknown Host gets 403; where pod IPs are
    allowed (server.allowPrivateNetworks, a ServiceMonitor), those of every private pod network are: RFC 1918, CGNAT
    100.64/10 and IPv6 unique local (`[fd00::5]:5000`), and a public IP is still refused;
  - with basic auth, anonymous API calls get 401 and the generated admin password works;
  - with a ServiceMonitor, its scrape (path, basic auth) answers 200;
  - with server.tls, the server answers HTTPS only, and every client below verifies it with the CA the chart mounts
    (Secret volumes are written under WORKDIR);
  - with SMOKE_S3_ENDPOINT set, the server's environment points boto3 at that S3 endpoint;
  - the `helm test` pod's script (from the render) passes: /health, a run with a param and a metric logged and read back.
With SMOKE_TRAIN=1 it also runs the rendered training Job's containers (init container, then `trainer train` with the
Job's TRAINER_* environment and the downward-API values filled in) against that server, and checks the finished run.
Cluster-only parts are rewritten: /mlflow-data -> WORKDIR, port 5000 -> a free local port, bind 127.0.0.1, and
the S3 artifact destination -> a local directory (no S3 here).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml



def _ci_lib(name: str):  # noqa: ANN202 - a module
    """ci/lib/<name>.py, loaded by path: on sys.path, ci/lib's cluster.py would shadow the tests' `cluster` package
    in the pytest runs that load this file as a module."""
    spec = importlib.util.spec_from_file_location(f"mlflow_stack_{name}",
                                                  Path(__file__).resolve().parents[4] / "ci" / "lib" / f"{name}.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generated_secrets = _ci_lib("hook_secrets").generated_secrets  # what the credentials hook creates
free_port = _ci_lib("ports").free_port  # a port no outgoing connection takes before the server binds


def find(docs, kind, component):
    for doc in docs:
        labels = doc.get("metadata", {}).get("labels", {})
        if doc.get("kind") == kind and labels.get("app.kubernetes.io/component") == component:
            return doc
    raise SystemExit(f"smoke: no {kind} with component {component} in the render")


def resolve_env(container, docs, rewrite):
    """The container's env as the kubelet builds it: envFrom Secrets and ConfigMaps in order (a later one wins), then
    env (which wins); secretKeyRef and configMapKeyRef values come from the Secrets and ConfigMaps in the same render
    (existing Secrets are appended to it by ci/chart-test.sh), an `optional` Secret key that is not there is left out."""
    secrets = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "Secret"}
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"}
    env = {}
    for src in container.get("envFrom") or []:
        if "secretRef" in src:
            env.update({k: base64.b64decode(v).decode() for k, v in secrets[src["secretRef"]["name"]].items()})
        if "configMapRef" in src:
            env.update({k: rewrite(str(v)) for k, v in configmaps[src["configMapRef"]["name"]].items()})
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = rewrite(str(item["value"]))
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            if ref.get("optional") and ref["key"] not in secrets.get(ref["name"], {}):
                continue
            env[item["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = rewrite(str(configmaps[ref["name"]][ref["key"]]))
    return env


# With server.tls: the CA the chart's clients trust (set once the Secret's files are written), for every request here.
TLS: dict[str, ssl.SSLContext] = {}


def tracking_test(docs) -> dict:
    """The `helm test` pod of the tracking server (with serving on, the serving one is a test Pod too)."""
    pods = [d for d in docs if d.get("kind") == "Pod" and d["spec"]["containers"][0]["name"] == "tracking"]
    if len(pods) != 1:
        raise SystemExit(f"smoke: expected one helm test Pod with a `tracking` container, found {len(pods)}")
    return pods[0]


def secret_mounts(pod, docs, work: Path) -> list[tuple[str, str]]:
    """Each Secret volume of POD (server.tls's, the clients' CA) written under WORK as the kubelet would mount it
    (all keys, or only `items`), as (mount path -> directory) rewrites, longest path first."""
    secrets = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "Secret"}
    volumes = {v["name"]: v["secret"] for v in pod.get("volumes", []) if "secret" in v}
    found = {}
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        for m in c.get("volumeMounts", []):
            if m["name"] in volumes:
                vol, target = volumes[m["name"]], work / "secrets" / m["name"]
                target.mkdir(parents=True, exist_ok=True)
                data = secrets[vol["secretName"]]
                for item in vol.get("items") or [{"key": k, "path": k} for k in data]:
                    (target / item["path"]).write_bytes(base64.b64decode(data[item["key"]]))
                found[m["mountPath"]] = str(target)
    return sorted(found.items(), key=lambda kv: -len(kv[0]))


def request(url, host=None, auth=None):
    req = urllib.request.Request(url)
    if host:
        req.add_header("Host", host)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10, context=TLS.get("context")) as resp:
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
        env = {**base_env, **{k: fix(v) for k, v in resolve_env(c, docs, rewrite).items()}, **fake_downward}
        if c["name"] == "trainer":
            env["MLFLOW_TRACKING_URI"] = base
            login = {k: env[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                                         "MLFLOW_TRACKING_SERVER_CERT_PATH") if k in env}  # fmt: skip
        subprocess.run([trainer, *[fix(a) for a in c["args"]]], env=env, cwd=workspace, check=True, timeout=900)

    from mlflow import MlflowClient

    os.environ.update(login)  # the check reads the run as the trainer logged in (basic auth is on by default)
    client = MlflowClient(base)
    trainer_env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    exp = client.get_experiment_by_name(trainer_env["MLFLOW_EXPERIMENT_NAME"])
    run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    epochs = int(trainer_env["TRAINER_EPOCHS"])
    assert run.info.status == "FINISHED", run.info.status
    assert run.data.tags.get("k8s.job") == job["metadata"]["name"], run.data.tags
    assert run.data.tags.get("image") == trainer_env["TRAINER_IMAGE"], run.data.tags
    for key, value in json.loads(trainer_env.get("TRAINER_TAGS") or "{}").items():  # training.tags, commas included
        assert run.data.tags.get(key) == value, (key, run.data.tags)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "metrics/mAP_0.5")]
    assert steps == list(range(epochs)), steps
    print(f"smoke: training Job ran as rendered: run {run.info.run_id} FINISHED in experiment "
          f"{exp.name!r}, {epochs} epochs logged, tags k8s.job/image from the Job")


def scrape(docs, root: str) -> None:
    """Scrapes the server as the rendered ServiceMonitor would (path, basic auth from the Secrets; with `scheme: https`,
    verifying the certificate for tlsConfig.serverName with the CA of tlsConfig.ca, as Prometheus does)."""
    monitor = next((d for d in docs if d.get("kind") == "ServiceMonitor"), None)
    if monitor is None:
        return
    endpoint = monitor["spec"]["endpoints"][0]
    secrets = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "Secret"}

    def value(ref: dict) -> str:
        return base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()

    if endpoint.get("scheme") == "https":
        tls = endpoint["tlsConfig"]
        context = ssl.create_default_context(cadata=value(tls["ca"]["secret"]))
        port = int(root.rsplit(":", 1)[1])

        def get(url, auth=None):  # TLS to 127.0.0.1, the certificate checked for serverName
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    context.wrap_socket(raw, server_hostname=tls["serverName"]) as conn:
                login = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else ""
                conn.sendall(f"GET {endpoint['path']} HTTP/1.1\r\nHost: {tls['serverName']}\r\nConnection: close\r\n"
                             f"{'Authorization: Basic ' + login + chr(13) + chr(10) if auth else ''}\r\n".encode())
                return int(conn.makefile("rb").readline().split()[1])
    else:
        get = request
    creds = None
    if "basicAuth" in endpoint:
        creds = (value(endpoint["basicAuth"]["username"]), value(endpoint["basicAuth"]["password"]))
        assert get(root + endpoint["path"]) == 401, "anonymous scrape was not refused"
    status = get(root + endpoint["path"], auth=creds)
    assert status == 200, f"ServiceMonitor scrape of {endpoint['path']} got {status}"
    print(f"smoke: the ServiceMonitor's scrape of {endpoint['path']} answers 200{' with basic auth' if creds else ''}"
          f"{' over HTTPS, certificate verified for ' + endpoint['tlsConfig']['serverName'] if get is not request else ''}")


def local_server_args(args: list[str], port: int, work: Path, rewrite) -> list[str]:
    """The server container's args for 127.0.0.1: a free port, artifacts and Prometheus files under WORKDIR (the pod's
    /tmp: several smokes may run at once here), one worker (2 busy cores)."""
    local = []
    for arg in args:
        if arg.startswith("--artifacts-destination="):
            arg = f"--artifacts-destination={work / 'artifacts'}"
        elif arg == "--port=5000":
            arg = f"--port={port}"
        elif arg == "--host=0.0.0.0":
            arg = "--host=127.0.0.1"
        elif arg.startswith("--workers="):
            arg = "--workers=1"
        elif arg.startswith("--expose-prometheus="):
            arg = f"--expose-prometheus={work / 'prometheus'}"
        local.append(rewrite(arg))
    return local


def main() -> int:
    rendered, work = Path(sys.argv[1]), Path(sys.argv[2])
    mappings = [m.split("=", 1) for m in sys.argv[3:]]
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    docs += generated_secrets(docs)  # the credentials hook's Secrets: never rendered, created in the cluster
    deploy = find(docs, "Deployment", "server")
    pod = deploy["spec"]["template"]["spec"]
    main_c = pod["containers"][0]
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mounts = [*secret_mounts(pod, docs, work)]
    mounts += secret_mounts(tracking_test(docs)["spec"], docs, work)
    job = next((d for d in docs if d.get("kind") == "Job"
                and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "training"), None)
    if job:
        mounts += secret_mounts(job["spec"]["template"]["spec"], docs, work)
    mounts = sorted(dict(mounts).items(), key=lambda kv: -len(kv[0]))

    def rewrite(text: str) -> str:
        for old, new in [("/mlflow-data", str(data)), *mounts, *mappings]:
            text = text.replace(old, new)
        return text

    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    ini = work / "basic_auth.ini"

    def container_env(container) -> dict:
        env = dict(base_env, **resolve_env(container, docs, rewrite))
        if "MLFLOW_AUTH_CONFIG_PATH" in env:  # the ConfigMap the chart mounts at /etc/mlflow-auth
            cm = next(d for d in docs if d.get("kind") == "ConfigMap" and d["metadata"]["name"].endswith("-auth"))
            ini.write_text(rewrite(cm["data"]["basic_auth.ini"]))
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        return env

    # init containers in order (db-upgrade; auth-admin with basic auth), each with its own script and env
    for init in pod.get("initContainers", []):
        subprocess.run([*init["command"], *map(rewrite, init["args"])], env=container_env(init), check=True, timeout=600)
        print(f"smoke: init container {init['name']} ran as rendered")

    args = local_server_args(main_c["args"], port, work, rewrite)
    env = container_env(main_c)
    expected_endpoint = os.environ.get("SMOKE_S3_ENDPOINT")
    if expected_endpoint is not None:  # what boto3 in the server would talk to (env and envFrom resolved)
        assert env.get("MLFLOW_S3_ENDPOINT_URL") == expected_endpoint, env.get("MLFLOW_S3_ENDPOINT_URL")
        print(f"smoke: the server talks to S3 at {expected_endpoint}")
    prefix = next((a.split("=", 1)[1] for a in args if a.startswith("--static-prefix=")), "")
    tls = any(a.startswith("--uvicorn-opts=") and "--ssl-certfile" in a for a in args)
    if tls:  # the clients' CA (the test pod's MLFLOW_TRACKING_SERVER_CERT_PATH), for this script's requests too
        test_env = resolve_env(tracking_test(docs)["spec"]["containers"][0], docs, rewrite)
        TLS["context"] = ssl.create_default_context(cafile=test_env["MLFLOW_TRACKING_SERVER_CERT_PATH"])
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}{prefix}"
    log = (work / "server.log").open("w")
    server = subprocess.Popen([*main_c["command"], *args], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600  # a loaded CI machine needs minutes to import mlflow in every worker
        while time.monotonic() < deadline:
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
        if "10.*" in allowed:  # pod IPs allowed: Prometheus (or a client) uses the pod's IP, whatever the pod network
            for host in ("10.1.2.3:5000", "172.20.0.7:5000", "192.168.3.4:5000", "100.64.0.5:5000", "100.127.1.2:5000",
                         "[fd00::5]:5000", "[fc00::1:5]:5000"):
                status = request(api, host=host, auth=auth)
                assert status == 200, f"pod IP Host {host} got {status} (allowed hosts: {','.join(allowed)})"
            for host in ("203.0.113.7:5000", "100.128.0.1:5000", "[2001:db8::5]:5000"):
                status = request(api, host=host, auth=auth)
                assert status == 403, f"public IP Host {host} got {status}, expected 403"
            print("smoke: pod IP Hosts (RFC 1918, CGNAT 100.64/10, IPv6 ULA) accepted, public IPs refused (403)")
        if auth:
            assert request(api) == 401, "anonymous API call was not refused"
            print("smoke: basic auth refuses anonymous calls and accepts the generated admin password")
        if tls:
            assert request(base.replace("https://", "http://") + "/health") is None, "plain HTTP answered next to TLS"
            print("smoke: the server serves HTTPS only, with the certificate the clients' CA verifies")
        scrape(docs, f"http://127.0.0.1:{port}")

        test_pod = tracking_test(docs)["spec"]["containers"][0]
        test_env = {**base_env, **resolve_env(test_pod, docs, rewrite), "MLFLOW_TRACKING_URI": base}
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
