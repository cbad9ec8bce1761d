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
    "artifacts.s3.accessKeyId": "sentinelAccessKeyId9503",
    "artifacts.s3.secretAccessKey": "sentinelSecretAccessKey0604",
    "server.oidc.clientSecret": "sentinelOidcClientSecret1907",
}
# the existingSecret that excludes each explicit value (the chart refuses both)
EXCLUSIVE = {
    "backend.postgresql.password": "backend.postgresql.existingSecret",
    "backend.mysql.password": "backend.mysql.existingSecret",
    "server.auth.adminPassword": "server.auth.existingSecret",
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
    assert not [s["name"] for s in hook_secrets(docs) if s["name"].endswith(("-postgresql", "-mysql", "-auth"))], \
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
