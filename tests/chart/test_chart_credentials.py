"""No credential is generated at render time, and none leaks out of a Secret's data (issue 22).

`helm template` is how Argo CD renders a chart: a random value in a rendered manifest would change at every sync. The
chart's generated credentials come from the pre-install/pre-upgrade hook `<fullname>-credentials` instead
(templates/credentials, files/create-secrets.py, tests/cluster/test_credentials_hook.py); explicit ones are rendered
into Secrets only. Checked over the chart defaults, values-cpu/values-gpu.yaml and every ci/*-values.yaml scenario:
- two renders give identical text;
- with sentinel explicit credentials no sentinel (nor its base64) appears anywhere but in a Secret's data: never in a
  container's command, args or env value, a ConfigMap, an annotation or the hook's env;
- no container env entry that carries a credential has a literal `value`;
- every Secret a pod reads is rendered, created by the hook (its SECRETS) or an existing Secret named in the values.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml
from test_chart_metadata import CHART, helm

SCENARIOS = {
    "defaults": [],
    "values-cpu": ["-f", str(CHART / "values-cpu.yaml")],
    "values-gpu": ["-f", str(CHART / "values-gpu.yaml")],
    **{f.stem: ["-f", str(f)] for f in sorted((CHART / "ci").glob("*-values.yaml"))},
}
# one distinct sentinel per explicit credential (the admin password needs 12 characters)
SENTINELS = {
    "backend.postgresql.password": "sentinelPgPassword7301",
    "backend.mysql.password": "sentinelMysqlPassword1705",
    "server.auth.adminPassword": "sentinelAdminPassword8402",
    "server.auth.clientPassword": "sentinelClientPassword2210",
    "artifacts.s3.accessKeyId": "sentinelAccessKeyId9503",
    "artifacts.s3.secretAccessKey": "sentinelSecretAccessKey0604",
    "server.oidc.clientSecret": "sentinelOidcClientSecret1907",
}
# the existingSecret that excludes each explicit value (the chart refuses both)
EXCLUSIVE = {
    "backend.postgresql.password": "backend.postgresql.existingSecret",
    "backend.mysql.password": "backend.mysql.existingSecret",
    "server.auth.adminPassword": "server.auth.existingSecret",
    "server.auth.clientPassword": "server.auth.clientExistingSecret",
    "artifacts.s3.accessKeyId": "artifacts.s3.existingSecret",
    "artifacts.s3.secretAccessKey": "artifacts.s3.existingSecret",
    "server.oidc.clientSecret": "server.oidc.existingSecret",
}
# existing Secrets without an explicit alternative (artifacts.type=azure's envFrom, gcs's key file)
EXISTING_ONLY = ("artifacts.azure.existingSecret", "artifacts.gcs.existingSecret")
# env names that carry a credential: they must come from a Secret (valueFrom), never be a literal value
CREDENTIAL_ENV = re.compile(r"PASSWORD|SECRET_KEY|SECRET_ACCESS_KEY|ACCESS_KEY_ID|TOKEN|ROOT_USER|CLIENT_SECRET|COOKIE_SECRET")


def backend_of(values: dict) -> str:
    return value_at(values, "backend.type") or "sqlite"


def oidc_of(values: dict) -> bool:
    return bool(value_at(values, "server.oidc.enabled"))


def with_auth(args: list[str]) -> list[str]:
    """The scenario with basic auth on, where the chart allows it (not with backend.type=mysql nor server.oidc: the chart
    refuses both)."""
    values = scenario_values(args)
    return args if backend_of(values) == "mysql" or oidc_of(values) else args + ["--set", "server.auth.enabled=true"]


def render(tmp_path: Path, args: list[str]) -> str:
    return helm(tmp_path, "template", "t", str(CHART), "-n", "ml", *args)


def docs_of(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def value_at(values: dict, dotted: str) -> object:
    node: object = values
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def scenario_values(args: list[str]) -> dict:
    return yaml.safe_load(Path(args[1]).read_text()) if args else {}


def containers(doc: dict) -> list[dict]:
    """Init containers and containers of a Pod, or of the pod template of a workload (a CronJob's through its Job)."""
    spec = doc.get("spec") or {}
    if doc["kind"] != "Pod":
        spec = (spec.get("jobTemplate") or {}).get("spec") or spec
        spec = (spec.get("template") or {}).get("spec") or {}
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def hook_secrets(docs: list[dict]) -> list[dict]:
    """The credentials hook's SECRETS list ([] when the hook is not rendered)."""
    for doc in docs:
        if doc["kind"] == "Job" and doc["metadata"]["name"].endswith("-credentials"):
            [env] = [e for e in containers(doc)[0]["env"] if e["name"] == "SECRETS"]
            return json.loads(env["value"])
    return []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_two_renders_are_identical(tmp_path: Path, scenario: str) -> None:
    first = render(tmp_path, SCENARIOS[scenario])
    second = render(tmp_path, SCENARIOS[scenario])
    assert first == second, f"{scenario}: `helm template` renders differently each time (a generated value?)"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_explicit_credentials_appear_only_in_secret_data(tmp_path: Path, scenario: str) -> None:
    values = scenario_values(SCENARIOS[scenario])
    backend = backend_of(values)
    # the other backends' passwords: set in vain with SQLite, refused next to backend.type=mysql (as is basic auth)
    sentinels = {k: v for k, v in SENTINELS.items() if not value_at(values, EXCLUSIVE[k])
                 and (not k.startswith("backend.") or k.startswith(f"backend.{backend}.") or backend == "sqlite")
                 and not (k.startswith("server.auth.") and (backend == "mysql" or oidc_of(values)))  # no basic auth
                 and (not k.startswith("server.oidc.") or oidc_of(values))  # the OIDC client secret with OIDC only
                 and not (k.startswith("artifacts.s3.") and value_at(values, "artifacts.type") not in (None, "s3"))}
    sets = [a for k, v in sentinels.items() for a in ("--set", f"{k}={v}")]
    forms = set(sentinels.values()) | {base64.b64encode(v.encode()).decode() for v in sentinels.values()}
    docs = docs_of(render(tmp_path, with_auth(SCENARIOS[scenario]) + sets))
    if not sentinels:  # every credential from an existing Secret: nothing to set, nothing to generate
        assert not hook_secrets(docs), f"{scenario}: the hook generates Secrets that exist"
    secrets_data: list[str] = []
    for doc in docs:
        rest = dict(doc)
        if doc["kind"] == "Secret":
            secrets_data += [base64.b64decode(v).decode() for v in (doc.get("data") or {}).values()]
            rest = {k: v for k, v in doc.items() if k not in ("data", "stringData")}
        text = yaml.safe_dump(rest)
        leaked = [form for form in forms if form in text]
        assert not leaked, f"{scenario}: {doc['kind']}/{doc['metadata']['name']} holds a credential outside Secret data"
    for key, sentinel in sentinels.items():
        if not key.startswith("backend.") or key.startswith(f"backend.{backend}."):  # SQLite: no database Secret at all
            assert sentinel in secrets_data, f"{scenario}: {key} is in no rendered Secret"
    # the derived Flask and cookie keys are as secret as the admin password and client secret: they stay in the Secret
    for derived in ("flask-secret-key", "cookie-secret"):
        for doc in [d for d in docs if d["kind"] == "Secret" and derived in (d.get("data") or {})]:
            key = base64.b64decode(doc["data"][derived]).decode()
            assert not any(key in yaml.safe_dump(d) for d in docs if d["kind"] != "Secret"), f"the {derived} leaked"
    explicit = ("-postgresql", "-mysql", "-auth", "-auth-client")
    assert not [s["name"] for s in hook_secrets(docs) if s["name"].endswith(explicit)], \
        f"{scenario}: the hook generates a credential that is set explicitly"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_credential_is_a_literal_env_value(tmp_path: Path, scenario: str) -> None:
    docs = docs_of(render(tmp_path, with_auth(SCENARIOS[scenario])))
    checked = 0
    for doc in docs:
        for c in containers(doc):
            for e in c.get("env") or []:
                if CREDENTIAL_ENV.search(e["name"]):
                    checked += 1
                    assert "value" not in e, f"{scenario}: {doc['metadata']['name']}/{c['name']}: {e['name']} is literal"
                    assert "secretKeyRef" in e.get("valueFrom", {}), f"{scenario}: {e['name']} not from a Secret"
    assert checked, f"{scenario}: no credential env at all (auth is on, or a database password): the check checks nothing"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_secret_a_pod_reads_has_a_source(tmp_path: Path, scenario: str) -> None:
    args = SCENARIOS[scenario]
    docs = docs_of(render(tmp_path, args))
    values = scenario_values(args)
    rendered = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    generated = {s["name"] for s in hook_secrets(docs)}
    existing = {value_at(values, k) for k in {*EXCLUSIVE.values(), *EXISTING_ONLY}} - {None, ""}
    assert not rendered & generated, f"{scenario}: rendered and generated by the hook: {rendered & generated}"
    for doc in docs:
        for c in containers(doc):
            names = [s["secretRef"]["name"] for s in c.get("envFrom") or [] if "secretRef" in s]
            names += [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env") or []
                      if "secretKeyRef" in e.get("valueFrom", {}) and not e["valueFrom"]["secretKeyRef"].get("optional")]
            missing = set(names) - rendered - generated - existing
            assert not missing, f"{scenario}: {doc['metadata']['name']}/{c['name']} reads Secrets nobody creates: {missing}"


# the chart's own MLflow clients (mlflow-stack.trackingClientComponents) and the pods allowed the admin password
CLIENTS = ("training", "serving", "serving-follower", "gc", "test")
ADMIN_READERS = ("server",)  # the server Deployment: `mlflow server` and its auth-admin init container


def component(doc: dict) -> str:
    return ((doc.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component", "")


def secret_refs(c: dict) -> list[tuple[str, str | None]]:
    """(Secret, key) of every secretKeyRef of a container, (Secret, None) of every envFrom secretRef."""
    refs = [(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in c.get("env") or [] if "secretKeyRef" in e.get("valueFrom", {})]  # fmt: skip
    return refs + [(s["secretRef"]["name"], None) for s in c.get("envFrom") or [] if "secretRef" in s]


def login_of(docs: list[dict], doc: dict, c: dict) -> tuple[str | None, tuple[str, str] | None]:
    """MLFLOW_TRACKING_USERNAME (env or a ConfigMap of envFrom) and the (Secret, key) of MLFLOW_TRACKING_PASSWORD."""
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    user = None
    for src in c.get("envFrom") or []:
        if "configMapRef" in src:
            user = configmaps[src["configMapRef"]["name"]].get("MLFLOW_TRACKING_USERNAME", user)
    password = None
    for e in c.get("env") or []:
        if e["name"] == "MLFLOW_TRACKING_USERNAME":
            user = e.get("value")
        if e["name"] == "MLFLOW_TRACKING_PASSWORD":
            ref = e["valueFrom"]["secretKeyRef"]
            password = (ref["name"], ref["key"])
    return user, password


def talks_to_mlflow(docs: list[dict], c: dict) -> bool:
    """A container with a tracking URI (env, a ConfigMap of envFrom, or `mlflow gc`'s --tracking-uri); the serving
    `helm test` pod and the training's make-dataset init container have none."""
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    env = {e["name"] for e in c.get("env") or []}
    for src in c.get("envFrom") or []:
        env |= set(configmaps.get(src.get("configMapRef", {}).get("name"), {}))
    return "MLFLOW_TRACKING_URI" in env or any(str(a).startswith("--tracking-uri=") for a in c.get("args") or [])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_only_the_server_reads_the_admin_password(tmp_path: Path, scenario: str) -> None:
    """Issue 34 item 7: training, serving, its follower, gc and `helm test` log in as the chart's non-admin client
    user; the admin password reaches the server pod only (and the hook creates it, never reads it)."""
    args = with_auth(SCENARIOS[scenario]) + ["--set", "gc.enabled=true", "--set", "serving.enabled=true",
                                              "--set", "serving.model=detector"]  # fmt: skip
    values = scenario_values(SCENARIOS[scenario])
    if backend_of(values) != "postgresql":  # gc needs PostgreSQL
        args += ["--set", "gc.enabled=false"]
    docs = docs_of(render(tmp_path, args))
    auth = any(c["name"] == "auth-admin" for d in docs if component(d) == "server" for c in containers(d))
    admin_secret = value_at(values, "server.auth.existingSecret") or "t-mlflow-stack-auth"
    client_secret = value_at(values, "server.auth.clientExistingSecret") or "t-mlflow-stack-auth-client"
    seen = set()
    for doc in docs:
        for c in containers(doc):
            refs = secret_refs(c)
            admin = [r for r in refs if r[0] == admin_secret and r[1] in (None, "admin-password")]
            if component(doc) not in ADMIN_READERS or doc["kind"] != "Deployment":
                where = f"{scenario}: {doc['kind']}/{doc['metadata']['name']}/{c['name']}"
                assert not admin, f"{where} reads the admin password"
            if component(doc) in CLIENTS and auth and talks_to_mlflow(docs, c):
                user, password = login_of(docs, doc, c)
                assert user == "mlflow-stack-client", f"{scenario}: {c['name']} logs in as {user}"
                assert password == (client_secret, "client-password"), f"{scenario}: {c['name']}'s password: {password}"
                seen.add(component(doc))
    if auth:
        expected = {component(d) for d in docs
                    if component(d) in CLIENTS and any(talks_to_mlflow(docs, c) for c in containers(d))}  # fmt: skip
        assert expected == seen, f"{scenario}: no client login checked in {expected - seen}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_training_pods_get_no_storage_keys(tmp_path: Path, scenario: str) -> None:
    """The server proxies every artifact (`--serve-artifacts`, mlflow-artifacts:/ URIs): the training pods get none of
    the artifact store's credentials, neither from its Secret nor in their ConfigMap."""
    docs = docs_of(render(tmp_path, SCENARIOS[scenario]))
    [server] = [d for d in docs if d["kind"] == "Deployment" and component(d) == "server"]
    [mlflow] = [c for c in containers(server) if c["name"] == "mlflow"]
    assert "--serve-artifacts" in mlflow["args"], f"{scenario}: the server does not proxy the artifacts"
    admin_secret = value_at(scenario_values(SCENARIOS[scenario]), "server.auth.existingSecret") or "t-mlflow-stack-auth"
    store_secrets = {name for name, _ in secret_refs(mlflow)} - {admin_secret}
    training = [d for d in docs if component(d) == "training" and d["kind"] in ("Job", "CronJob")]
    assert training, f"{scenario}: no training Job"
    for doc in training:
        for c in containers(doc):
            refs = secret_refs(c)
            assert not [r for r in refs if r[0] in store_secrets or r[1] is None], \
                f"{scenario}: {doc['metadata']['name']}/{c['name']} gets storage credentials: {refs}"
    for cm in [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-training")]:
        storage = [k for k in cm.get("data") or {} if k.startswith(("AWS_", "MLFLOW_S3_", "GOOGLE_", "AZURE_"))]
        assert not storage, f"{scenario}: the training ConfigMap sets storage settings {storage}"
