"""Login through an OpenID Connect provider (`server.oidc`): the chart's rendered oauth2-proxy sidecar, run for real.

`helm template -f charts/mlflow-stack/ci/oidc-values.yaml` (the /mlflow prefix, an Ingress host, `emailDomains:
[example.com]`, `allowedGroups: [ml-team]`) gives the server pod; its `mlflow` container and its `oauth2-proxy` sidecar
run as rendered on 127.0.0.1 (a real oauth2-proxy built from its Go module, env from the rendered Secret), rewritten only
for addresses (issuer, listen address, upstream port, the Ingress host in the redirect URL) and for cookies over plain
HTTP. The provider is oauth2-mock-server (npm, tests/oidc_provider.mjs): it logs in whoever USER_FILE names.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import urllib.parse
from pathlib import Path
from typing import Iterator

import pytest
import requests
import yaml
from mlflow.tracking import MlflowClient

from harness import BIN, REPO, Proc, free_port, wait_until

CHART = REPO / "charts" / "mlflow-stack"
SCENARIO = CHART / "ci" / "oidc-values.yaml"
TOOLS = REPO / ".tools"
HELM = TOOLS / "bin" / "helm"
OAUTH2_PROXY = TOOLS / "bin" / "oauth2-proxy"
MOCK_SERVER = TOOLS / "npm" / "oauth2-mock-server"
ISSUER = "https://login.example.com/realms/ml"  # the scenario's issuerUrl
INGRESS = "https://mlflow.example.com"  # the scenario's Ingress host, in the redirect URL
HTML = {"Accept": "text/html,application/xhtml+xml"}  # what a browser sends
ALICE = {"email": "alice@example.com", "groups": ["ml-team"]}
# With server.tls the clients here trust the certificate but not its host name (see Stack.session).
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


TLS_SET = ["--set", "server.tls.enabled=true", "--set", "server.tls.secretName=mlflow-tls"]


def render(tmp_path: Path, *extra: str) -> list[dict]:
    assert os.access(HELM, os.X_OK), f"{HELM} is missing: run `make setup`"
    homes = {f"HELM_{k}_HOME": str(tmp_path / "helm" / k.lower()) for k in ("CONFIG", "CACHE", "DATA")}
    out = subprocess.run([str(HELM), "template", "t", str(CHART), "-n", "ml", "-f", str(SCENARIO), *extra],
                         env={**os.environ, **homes}, capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def secret_env(container: dict, docs: list[dict]) -> dict[str, str]:
    """The container's env as the kubelet builds it: values, and secretKeyRef values from the rendered Secrets."""
    secrets = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "Secret"}
    env = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
    return env


def rewrite(args: list[str], changes: dict[str, str]) -> list[str]:
    """args with each FROM text replaced by TO; every FROM must be there (the chart renders what the test rewrites)."""
    joined = "\n".join(args)
    for old, new in changes.items():
        assert old in joined, f"{old!r} is not in the rendered args:\n{joined}"
        joined = joined.replace(old, new)
    return joined.split("\n")


def service_certificate(directory: Path) -> Path:
    """A self-signed certificate for the Service's names only (as cert-manager would issue it), as the TLS Secret's
    files tls.crt and tls.key; also the CA that verifies it."""
    directory.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=mlflow-service",
                    "-addext", "subjectAltName=DNS:mlflow-service.ml.svc.cluster.local,DNS:mlflow-service.ml.svc",
                    "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt")],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    return directory / "tls.crt"


class Stack:
    """The mock provider, the rendered `mlflow server` and the rendered oauth2-proxy sidecar, on 127.0.0.1; with tls,
    as `server.tls` renders them (HTTPS from MLflow and from the proxy, the Secret's files in a local directory)."""

    def __init__(self, tmp: Path, tls: bool = False) -> None:
        self.tmp, self.tls = tmp, tls
        self.user_file = tmp / "user.json"
        self.login_as(ALICE)
        self.docs = render(tmp, *(TLS_SET if tls else []))
        self.ca = service_certificate(tmp / "tls") if tls else None
        scheme = "https" if tls else "http"
        deploy = next(d for d in self.docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "t-mlflow-stack")
        containers = {c["name"]: c for c in deploy["spec"]["template"]["spec"]["containers"]}
        self.mlflow_c, self.proxy_c = containers["mlflow"], containers["oauth2-proxy"]
        self.provider_port, self.mlflow_port, self.proxy_port = free_port(), free_port(), free_port()
        self.issuer = f"http://127.0.0.1:{self.provider_port}"
        self.mlflow = f"{scheme}://127.0.0.1:{self.mlflow_port}"  # MLflow's own port: the Service's `http`, in-cluster
        self.tracking = f"{self.mlflow}/mlflow"  # the tracking URI of the chart's own clients (staticPrefix)
        self.proxy = f"{scheme}://127.0.0.1:{self.proxy_port}"  # the Service's `oidc` port, behind the Ingress
        self.procs: list[Proc] = []

    def login_as(self, user: dict) -> None:
        self.user_file.write_text(json.dumps(user))

    def start(self) -> None:
        assert os.access(OAUTH2_PROXY, os.X_OK), f"{OAUTH2_PROXY} is missing: run `make setup`"
        assert (MOCK_SERVER / "node_modules").is_dir(), f"{MOCK_SERVER} is missing: run `make setup`"
        provider = Proc(["node", str(REPO / "tests" / "oidc_provider.mjs"), str(MOCK_SERVER), str(self.provider_port),
                         str(self.user_file)], self.tmp / "provider.log")  # fmt: skip
        self.procs.append(provider)
        wait_until(lambda: requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=3).ok, 60,
                   "mock OIDC provider", provider)  # fmt: skip

        data = self.tmp / "data"
        data.mkdir()
        tls_files = {"/etc/mlflow-tls": str(self.tmp / "tls")} if self.tls else {}
        args = rewrite(self.mlflow_c["args"], {
            "--host=0.0.0.0": "--host=127.0.0.1", "--port=5000": f"--port={self.mlflow_port}",
            "/mlflow-data": str(data), "--artifacts-destination=s3://mlflow": f"--artifacts-destination={data / 'art'}",
            **tls_files,
        })  # fmt: skip
        env = {k: v for k, v in secret_env(self.mlflow_c, self.docs).items() if k != "HOME"}
        server = Proc([str(BIN / "mlflow"), "server", *args], self.tmp / "mlflow.log", env)
        self.procs.append(server)
        wait_until(lambda: self.session().get(f"{self.tracking}/health", timeout=3).ok, 600, "mlflow server", server)

        listen = "--https-address=0.0.0.0:4180" if self.tls else "--http-address=0.0.0.0:4180"
        args = rewrite(self.proxy_c["args"], {
            ISSUER: self.issuer, listen: listen.replace("0.0.0.0:4180", f"127.0.0.1:{self.proxy_port}"),
            "127.0.0.1:5000/": f"127.0.0.1:{self.mlflow_port}/", INGRESS: f"https://127.0.0.1:{self.proxy_port}",
            **tls_files,
        })  # fmt: skip
        if not self.tls:  # plain HTTP: the redirect URL and the cookies too (the chart keeps cookies HTTPS-only)
            args = rewrite(args, {f"https://127.0.0.1:{self.proxy_port}": self.proxy,
                                  "--cookie-secure=true": "--cookie-secure=false"})  # fmt: skip
        proxy = Proc([str(OAUTH2_PROXY), *args], self.tmp / "oauth2-proxy.log", secret_env(self.proxy_c, self.docs))
        self.procs.append(proxy)
        for probe in ("readinessProbe", "livenessProbe"):  # the sidecar's probes, as the kubelet sends them
            get = self.proxy_c[probe]["httpGet"]
            assert get["scheme"] == ("HTTPS" if self.tls else "HTTP"), get
            wait_until(lambda: self.session().get(self.proxy + get["path"], timeout=3).status_code == 200, 60,
                       f"oauth2-proxy {get['path']}", proxy)  # fmt: skip

    def session(self) -> requests.Session:
        """A client's session. With TLS it trusts the Secret's CA but not the host name: the certificate names the
        Service, and these servers answer on 127.0.0.1 (test_tls_* checks the certificate itself)."""
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE, where set, overrides verify
        session.verify = False
        return session

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.tail(15)}" for p in self.procs)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("oidc"))
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture
def alice(stack: Stack) -> Iterator[Stack]:
    stack.login_as(ALICE)
    yield stack
    stack.login_as(ALICE)


def login(stack: Stack) -> tuple[requests.Session, requests.Response]:
    """A browser opening the UI: every redirect followed (proxy -> provider -> proxy's callback -> UI), cookies kept."""
    session = stack.session()
    return session, session.get(f"{stack.proxy}/mlflow/", headers=HTML, timeout=60)


def test_a_browser_without_session_is_sent_to_the_provider(alice: Stack) -> None:
    response = requests.get(f"{alice.proxy}/mlflow/", headers=HTML, allow_redirects=False, timeout=30)
    assert response.status_code == 302, (response.status_code, response.text[:500], alice.logs())
    location = urllib.parse.urlsplit(response.headers["Location"])
    discovery = requests.get(f"{alice.issuer}/.well-known/openid-configuration", timeout=10).json()
    assert f"{location.scheme}://{location.netloc}{location.path}" == discovery["authorization_endpoint"]
    query = dict(urllib.parse.parse_qsl(location.query))
    assert query["client_id"] == "mlflow"
    assert query["redirect_uri"] == f"{alice.proxy}/mlflow/oauth2/callback"  # under the static prefix
    assert query["response_type"] == "code" and query["code_challenge_method"] == "S256", query
    assert set(query["scope"].split()) == {"openid", "email", "profile"}, query


def test_api_calls_without_session_do_not_reach_mlflow(alice: Stack) -> None:
    response = requests.post(f"{alice.proxy}/mlflow/api/2.0/mlflow/experiments/create", json={"name": "sneaky"},
                             headers={"Accept": "application/json"}, allow_redirects=False, timeout=30)  # fmt: skip
    assert response.status_code == 401, (response.status_code, response.text[:300])
    assert MlflowClient(alice.tracking).get_experiment_by_name("sneaky") is None


def test_a_logged_in_browser_reaches_the_ui_and_its_api(alice: Stack) -> None:
    session, response = login(alice)
    assert response.status_code == 200, (response.status_code, response.text[:500], alice.logs())
    assert response.url == f"{alice.proxy}/mlflow/", [r.headers.get("Location") for r in response.history]
    assert "<title>MLflow</title>" in response.text, response.text[:500]
    hops = [urllib.parse.urlsplit(r.headers["Location"]).path for r in response.history]
    assert hops == ["/authorize", "/mlflow/oauth2/callback", "/mlflow/"], hops
    cookie = next(c for c in session.cookies if c.name == "_oauth2_proxy")
    assert cookie.has_nonstandard_attr("HttpOnly"), cookie
    script = next(p for p in response.text.split('"') if p.startswith("static-files/static/js/main."))
    assert session.get(f"{alice.proxy}/mlflow/{script}", timeout=60).status_code == 200  # the UI's code loads
    created = session.post(f"{alice.proxy}/mlflow/ajax-api/2.0/mlflow/experiments/create", json={"name": "via-proxy"},
                           timeout=60)  # fmt: skip
    assert created.status_code == 200, (created.status_code, created.text[:300])  # as the UI itself calls MLflow
    assert MlflowClient(alice.tracking).get_experiment_by_name("via-proxy") is not None


@pytest.mark.parametrize("user", [
    {"email": "mallory@elsewhere.example", "groups": ["ml-team"]},  # not in emailDomains
    {"email": "bob@example.com", "groups": ["sales"]},  # not in allowedGroups
], ids=["other-domain", "other-group"])  # fmt: skip
def test_a_user_the_values_do_not_allow_is_refused_after_the_provider_login(alice: Stack, user: dict) -> None:
    alice.login_as(user)
    _, response = login(alice)
    assert response.status_code == 403, (response.status_code, response.text[:300])
    assert "<title>MLflow</title>" not in response.text


def test_in_cluster_clients_keep_mlflows_own_port(alice: Stack) -> None:
    """The training Job, hooks, `helm test` and serving talk to the Service's `http` port: no login there."""
    client = MlflowClient(alice.tracking)
    experiment = client.create_experiment("in-cluster")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "mAP_0.5", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"mAP_0.5": 0.5}


def test_a_real_browser_logs_in_and_sees_the_experiments(alice: Stack, tmp_path: Path) -> None:
    """Debian's headless Chromium through the whole login: it ends on MLflow's experiment list, served by the proxy."""
    from playwright.sync_api import sync_playwright

    MlflowClient(alice.tracking).create_experiment("seen-in-the-browser")
    chromium = "/usr/bin/chromium"
    screenshot = REPO / ".work" / "screenshots" / "oidc-experiments.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{alice.proxy}/mlflow/#/experiments")
            try:
                page.get_by_text("seen-in-the-browser").first.wait_for(timeout=120_000)
            finally:
                page.screenshot(path=str(screenshot), full_page=True)
            assert page.url.startswith(f"{alice.proxy}/mlflow/"), page.url
        finally:
            browser.close()


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("oidc-tls"), tls=True)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def served_certificate(url: str, ca: Path) -> dict:
    """The certificate the server at url presents, verified against ca (its host name is the Service's, not 127.0.0.1)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw, context.wrap_socket(raw) as tls:
        return tls.getpeercert()


def test_tls_the_proxy_serves_the_secrets_certificate_and_reaches_mlflow_over_https(tls_stack: Stack) -> None:
    """With server.tls the browser gets HTTPS from the sidecar (the Secret's certificate), `Secure` session cookies,
    and the sidecar talks HTTPS to MLflow on the loopback, whose certificate names the Service, not 127.0.0.1."""
    for url in (tls_stack.proxy, tls_stack.mlflow):
        subject = dict(item[0] for item in served_certificate(url, tls_stack.ca)["subject"])
        assert subject["commonName"] == "mlflow-service", (url, subject)
    plain = requests.get(tls_stack.proxy.replace("https://", "http://") + "/mlflow/", timeout=10)
    assert plain.status_code == 400 and "HTTPS" in plain.text, (plain.status_code, plain.text[:200])  # no plain HTTP
    session, response = login(tls_stack)
    assert response.status_code == 200, (response.status_code, response.text[:500], tls_stack.logs())
    assert "<title>MLflow</title>" in response.text, response.text[:500]
    cookie = next(c for c in session.cookies if c.name == "_oauth2_proxy")
    assert cookie.secure, cookie
    created = session.post(f"{tls_stack.proxy}/mlflow/ajax-api/2.0/mlflow/experiments/create", json={"name": "over-tls"},
                           timeout=60)  # fmt: skip
    assert created.status_code == 200, (created.status_code, created.text[:300])
