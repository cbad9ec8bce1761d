"""The chart's life on a real API server (ci/cluster), with Helm 4 (`helm`) and Helm 3 (`helm3`).

install --wait -> upgrade to GPU values with another epoch count -> upgrade to the bundled-PostgreSQL scenario (twice:
generated credentials must not change) -> rollback to revision 1 -> back to PostgreSQL (the kept Secrets are reused) ->
helm test -> uninstall (PVCs and Secrets marked keep survive) -> install again (every generated credential, the
PostgreSQL password, the object store's S3 keys, the admin password and the Flask key, still has its first value). Plus: every ci/*-values.yaml scenario is accepted by the
API server (server-side dry run, strict validation), and bad values are refused before anything is created.

kwok runs no container (ci/cluster.d/README.md): pods turn Ready and Jobs complete at once. What the kubelet would
refuse (a Secret, ConfigMap, PVC or ServiceAccount a pod needs that does not exist) is checked here instead.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
import yaml
from clusterlib import CHART, Helm, tool, versions
from rendered import generated_secrets

pytestmark = pytest.mark.cluster

RELEASE = "mlflow-stack"  # fullname = release name, so object names read like the docs
TIMEOUT = ["--timeout", "4m"]
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))


def manifest(helm, ns: str, what: str = "manifest", revision: int | None = None) -> list[dict]:
    args = ["get", what, RELEASE, "-n", ns] + (["--revision", str(revision)] if revision else [])
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def names(objs: list[dict], kind: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs if o["kind"] == kind)


def kept(objs: list[dict]) -> list[tuple[str, str]]:
    return sorted(
        (o["kind"], o["metadata"]["name"])
        for o in objs
        if (o["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep"
    )


def secret_data(cluster, ns: str, name: str) -> dict[str, str]:
    data = cluster.get(f"secret/{name}", "-n", ns).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def training_jobs(cluster, ns: str) -> list[dict]:
    jobs = cluster.get("jobs", "-n", ns, "-l", "app.kubernetes.io/component=training")["items"]
    return sorted(jobs, key=lambda j: j["metadata"]["creationTimestamp"])


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def assert_all_exist(cluster, ns: str, objs: list[dict]) -> None:
    """Every object of the release is on the server (kubectl get -f fails naming the first missing one)."""
    cluster.kubectl("get", "-n", ns, "-f", "-", "-o", "name", input=yaml.safe_dump_all(objs))


def assert_server_available(cluster, ns: str) -> None:
    for name in names_of_server_deployments(cluster, ns):
        cluster.wait("--for=condition=Available", f"deployment/{name}", "-n", ns, timeout=60)


def names_of_server_deployments(cluster, ns: str) -> list[str]:
    items = cluster.get("deployments", "-n", ns, "-l", "app.kubernetes.io/component=server")["items"]
    assert items, "no server Deployment"
    return [d["metadata"]["name"] for d in items]


def assert_pod_references_exist(cluster, ns: str) -> None:
    """What the kubelet would check before starting a container, which kwok does not: every Secret, ConfigMap, PVC and
    ServiceAccount a live pod of the namespace refers to (and does not mark optional) exists."""
    existing = {
        kind: {o["metadata"]["name"] for o in cluster.get(kind, "-n", ns)["items"]}
        for kind in ("secrets", "configmaps", "persistentvolumeclaims", "serviceaccounts")
    }
    missing = []
    for pod in cluster.get("pods", "-n", ns)["items"]:
        if pod["status"].get("phase") in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
            continue
        spec, pod_name = pod["spec"], pod["metadata"]["name"]
        refs = [("serviceaccounts", spec.get("serviceAccountName", "default"), False)]
        for vol in spec.get("volumes", []):
            if "secret" in vol:
                refs.append(("secrets", vol["secret"]["secretName"], vol["secret"].get("optional", False)))
            if "configMap" in vol:
                refs.append(("configmaps", vol["configMap"]["name"], vol["configMap"].get("optional", False)))
            if "persistentVolumeClaim" in vol:
                refs.append(("persistentvolumeclaims", vol["persistentVolumeClaim"]["claimName"], False))
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for src in c.get("envFrom", []):
                for key, kind in (("secretRef", "secrets"), ("configMapRef", "configmaps")):
                    if key in src:
                        refs.append((kind, src[key]["name"], src[key].get("optional", False)))
            for e in c.get("env", []):
                for key, kind in (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")):
                    ref = (e.get("valueFrom") or {}).get(key)
                    if ref:
                        refs.append((kind, ref["name"], ref.get("optional", False)))
        missing += [f"{pod_name}: {kind}/{name}" for kind, name, optional in refs
                    if not optional and name not in existing[kind]]  # fmt: skip
    assert not missing, f"pods refer to objects that do not exist (a kubelet would not start them): {missing}"


def hook_creates_secrets(cluster, helm, namespace: str, *args) -> list[str]:
    """What the credentials hook does before an install/upgrade with ARGS (kwok runs no container, its Job only
    "completes"): create each Secret of its list that does not exist yet, never touching one that does (its 409).
    Returns the names on its list."""
    docs = [d for d in yaml.safe_load_all(helm("template", RELEASE, CHART, "-n", namespace, *args).stdout) if d]
    secrets = generated_secrets(docs)
    for secret in secrets:
        made = cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(secret), check=False)
        assert made.returncode == 0 or "AlreadyExists" in made.stderr, made.stderr
    return [secret["metadata"]["name"] for secret in secrets]


def scenario(fragment: str):
    found = [p for p in SCENARIOS if fragment in p.name]
    assert len(found) == 1, f"expected one {CHART}/ci/*{fragment}*-values.yaml, found {[p.name for p in SCENARIOS]}"
    return found[0]


def test_install_upgrade_rollback_test_uninstall(cluster, helm, namespace):
    ns = ["-n", namespace]

    # 1. install the defaults and wait: every object exists, the server Deployment is Available
    hook_creates_secrets(cluster, helm, namespace)
    helm("install", RELEASE, CHART, *ns, "--wait", *TIMEOUT)
    rev1 = manifest(helm, namespace)
    assert_all_exist(cluster, namespace, rev1)
    assert_server_available(cluster, namespace)
    assert_pod_references_exist(cluster, namespace)
    [job1] = training_jobs(cluster, namespace)
    cluster.wait("--for=condition=Complete", f"job/{job1['metadata']['name']}", *ns)

    # 2. GPU values plus another epoch count: accepted (no immutable-field error), a new Job, GPU-scheduled
    epochs = "7"
    hook_creates_secrets(cluster, helm, namespace, "-f", CHART / "values-gpu.yaml", "--set", f"training.params.epochs={epochs}")
    helm("upgrade", RELEASE, CHART, *ns, "-f", CHART / "values-gpu.yaml", "--set", f"training.params.epochs={epochs}",
         "--wait", *TIMEOUT)  # fmt: skip
    job2 = training_jobs(cluster, namespace)[-1]
    assert job2["metadata"]["name"] != job1["metadata"]["name"], "no new training Job for the new values"
    [trainer] = job2["spec"]["template"]["spec"]["containers"]
    assert env_of(trainer).get("TRAINER_EPOCHS") == epochs
    assert env_of(trainer).get("TRAINER_DEVICE") == "0"
    cluster.wait("--for=condition=Complete", f"job/{job2['metadata']['name']}", *ns)
    [pod] = cluster.get("pods", *ns, "-l", f"job-name={job2['metadata']['name']}")["items"]
    [pod_trainer] = [c for c in pod["spec"]["containers"] if c["name"] == trainer["name"]]
    assert int(pod_trainer["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod["spec"].get("tolerations", []))
    assert pod["spec"]["nodeName"] == "kwok-gpu-0"
    assert_pod_references_exist(cluster, namespace)

    # 3. the bundled-PostgreSQL scenario (with basic auth, so a Flask key is generated); a second upgrade with another
    # training value must keep every generated credential
    pg_args = ["-f", scenario("postgres-bundled"), "--set", "server.auth.enabled=true"]
    hooked = hook_creates_secrets(cluster, helm, namespace, *pg_args)
    helm("upgrade", RELEASE, CHART, *ns, *pg_args, "--wait", *TIMEOUT)
    rev3 = manifest(helm, namespace)
    assert_all_exist(cluster, namespace, rev3)
    assert names(rev3, "StatefulSet"), "no bundled PostgreSQL StatefulSet"
    assert_server_available(cluster, namespace)
    assert_pod_references_exist(cluster, namespace)
    generated = {name: secret_data(cluster, namespace, name) for name in hooked}  # the hook's, never rendered
    pg_secret = [n for n in generated if n.endswith("-postgresql")]
    auth_secret = [n for n in generated if n.endswith("-auth")]
    s3_secrets = [n for n in generated if n.endswith("-objectstore-keys")]  # the one Secret of the generated S3 keys
    assert pg_secret and auth_secret and len(s3_secrets) == 1, f"generated Secrets: {sorted(generated)}"
    assert "flask-secret-key" in generated[auth_secret[0]] and "admin-password" in generated[auth_secret[0]]
    for name in s3_secrets:  # the bundled object store's generated keys (the rollback used to change them)
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(generated[name]), (name, sorted(generated[name]))
    hook_creates_secrets(cluster, helm, namespace, *pg_args, "--set", "training.params.epochs=9")
    helm("upgrade", RELEASE, CHART, *ns, *pg_args, "--set", "training.params.epochs=9", "--wait", *TIMEOUT)
    for name, data in generated.items():
        assert secret_data(cluster, namespace, name) == data, f"Secret {name} changed on upgrade"

    # 4. rollback to revision 1 (SQLite again)
    helm("rollback", RELEASE, "1", *ns, "--wait", *TIMEOUT)
    status = yaml.safe_load(helm("status", RELEASE, *ns, "-o", "yaml").stdout)
    assert status["info"]["status"] == "deployed" and status["version"] == 5
    assert names(manifest(helm, namespace), "Deployment") == names(rev1, "Deployment")
    assert not names(manifest(helm, namespace), "StatefulSet")
    assert_server_available(cluster, namespace)
    assert_pod_references_exist(cluster, namespace)

    # 5. forward to PostgreSQL again: the Secrets kept when revision 1 came back are adopted, so the database password
    # (the data on the kept volume needs it), the object store's S3 keys (its data too), the admin password and the
    # Flask key are the same as before (revision 1's S3 Secret, without keys, overwrote that one: the keys Secret did not)
    hook_creates_secrets(cluster, helm, namespace, *pg_args)
    helm("upgrade", RELEASE, CHART, *ns, *pg_args, "--wait", *TIMEOUT)
    for name, data in generated.items():
        assert secret_data(cluster, namespace, name) == data, f"Secret {name} changed after rollback"

    # 6. helm test (kwok's helm-test stage completes the test pod; ci/cluster.d/stages.yaml)
    helm("test", RELEASE, *ns, *TIMEOUT)
    hooks = json.loads(helm("status", RELEASE, *ns, "-o", "json").stdout)["hooks"]
    tests = {h["name"]: h["last_run"]["phase"] for h in hooks if "test" in h["events"]}
    assert tests and set(tests.values()) == {"Succeeded"}, tests

    # 7. uninstall: the release is gone; the Secrets and PVCs marked keep stay (also revision 1's SQLite PVC, which
    # left the release at the switch to PostgreSQL but was kept then too)
    last = manifest(helm, namespace)
    keep = kept(last)
    released = {(o["kind"], o["metadata"]["name"]) for o in last}
    assert not {("Secret", name) for name in generated} & released, "a generated Secret is part of the release"
    sqlite_pvcs = names(rev1, "PersistentVolumeClaim")
    assert sqlite_pvcs and {("PersistentVolumeClaim", n) for n in sqlite_pvcs} <= set(kept(rev1)), kept(rev1)
    helm("uninstall", RELEASE, *ns, "--wait", *TIMEOUT)
    assert helm("status", RELEASE, *ns, check=False).returncode != 0
    for kind, name in keep + kept(rev1) + [("Secret", name) for name in generated]:  # the hook's Secrets are not Helm's
        cluster.kubectl("get", kind.lower(), name, *ns)
    gone = [(o["kind"], o["metadata"]["name"]) for o in last if (o["kind"], o["metadata"]["name"]) not in keep]
    for kind, name in gone:
        left = cluster.kubectl("get", kind.lower(), name, *ns, "--ignore-not-found", "-o", "name").stdout.strip()
        assert not left, f"{kind}/{name} survived helm uninstall"
    assert training_jobs(cluster, namespace) == []
    # the bundled PostgreSQL's volume (a StatefulSet volumeClaimTemplate) is never deleted by Helm
    assert cluster.get("pvc", *ns, "-l", "app.kubernetes.io/component=backend")["items"]

    # 8. install again: the kept Secrets are adopted, every generated credential keeps its first value
    hook_creates_secrets(cluster, helm, namespace, *pg_args)
    helm("install", RELEASE, CHART, *ns, *pg_args, "--wait", *TIMEOUT)
    for name, data in generated.items():
        assert secret_data(cluster, namespace, name) == data, f"Secret {name} changed on re-install"


@pytest.mark.parametrize("values", SCENARIOS or [None], ids=lambda p: p.name if p else "none-found")
def test_scenario_is_accepted_by_the_api_server(cluster, namespace, values):
    """helm template | kubectl apply --dry-run=server --validate=strict: schema, admission and defaulting of the real
    API server (unknown or duplicate fields, wrong types, invalid names) for every CI scenario."""
    assert values is not None, f"no scenarios in {CHART}/ci/*-values.yaml"
    helm = Helm("helm", tool("helm"), cluster.env)  # one Helm is enough: both render the same
    rendered = helm("template", RELEASE, CHART, "-n", namespace, "-f", values,
                    "--kube-version", versions()["KUBE_VERSION"], "--api-versions", "monitoring.coreos.com/v1",
                    "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor").stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert docs, "nothing rendered"
    # a bare Pod (the helm test hook) is admitted only when its ServiceAccount exists, also in a dry run: create those
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    if accounts:
        cluster.apply(accounts, "-n", namespace)
    out = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-", input=rendered)
    applied = [line for line in out.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(docs), out.stdout


# values file -> what the error must name (Helm 3 says `server.replicas`, Helm 4's schema errors `/server/replicas`)
BAD_VALUES = {
    # schema (values.schema.json): wrong type
    "schema-type": ("server:\n  replicas: two\n", r"server[./]replicas"),
    # cross-field rule (fail guard): SQLite is a single writer
    "sqlite-replicas": ("server:\n  replicas: 2\n", r"server\.replicas.*(?i:sqlite)"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_refused_before_anything_is_created(cluster, helm, namespace, tmp_path, case):
    text, expected = BAD_VALUES[case]
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    proc = helm("install", RELEASE, CHART, "-n", namespace, "-f", bad, "--wait", *TIMEOUT, check=False)
    assert proc.returncode != 0
    assert re.search(expected, proc.stderr), proc.stderr
    created = cluster.kubectl("get", "all,secrets,configmaps,pvc,serviceaccounts,ingresses,networkpolicies,pdb",
                              "-n", namespace, "-o", "name").stdout.split()  # fmt: skip
    leftovers = [n for n in created if n not in ("serviceaccount/default", "configmap/kube-root-ca.crt")]
    assert leftovers == [], f"objects created by a refused install: {leftovers}"


SWEEP = {"training": {"sweepName": "optimizers", "params": {"weights": "", "cfg": "yolov5n.yaml", "device": "cpu"},
                      "variants": {"sgd": {}, "adam": {"params": {"optimizer": "Adam"}},
                                   "adamw": {"params": {"optimizer": "AdamW"}, "tags": {"note": "w"}}}}}  # fmt: skip


def jobs_by_variant(cluster, ns: str) -> dict[str, tuple[str, str]]:
    """variant -> (Job name, uid) of the namespace's training Jobs (each variant exactly once)."""
    jobs = training_jobs(cluster, ns)
    by_variant = {j["metadata"]["labels"]["mlflow-stack/variant"]: (j["metadata"]["name"], j["metadata"]["uid"]) for j in jobs}
    assert len(by_variant) == len(jobs), [j["metadata"]["name"] for j in jobs]
    return by_variant


def test_sweep_installs_one_job_per_variant_and_an_upgrade_replaces_only_the_changed_one(cluster, helm, namespace, tmp_path):
    from trainer.cli import build_parser
    from trainer.config import resolve
    from trainer.training.runner import run_tags

    ns = ["-n", namespace]
    values = tmp_path / "sweep.yaml"
    values.write_text(yaml.safe_dump(SWEEP))
    helm("install", RELEASE, CHART, *ns, "-f", values, "--wait", *TIMEOUT)
    first = jobs_by_variant(cluster, namespace)
    assert sorted(first) == ["adam", "adamw", "sgd"]
    for name, _ in first.values():
        cluster.wait("--for=condition=Complete", f"job/{name}", *ns)
    # what each Job's trainer makes of its environment: a run named after the variant, in the sweep
    for variant, (name, _) in first.items():
        [trainer] = cluster.get(f"job/{name}", *ns)["spec"]["template"]["spec"]["containers"]
        env = {}  # as the kubelet builds it: envFrom ConfigMaps (the connection settings), then env
        for source in trainer.get("envFrom", []):
            if "configMapRef" in source:
                env.update(cluster.get(f"configmap/{source['configMapRef']['name']}", *ns).get("data") or {})
        env.update({k: v for k, v in env_of(trainer).items() if v is not None})
        config = resolve(build_parser().parse_args(["train"]), env)
        tags = run_tags(config, env)
        assert (config.run_name, tags["variant"], tags["sweep"]) == (variant, variant, "optimizers")
        assert config.optimizer == {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}[variant]

    # change one variant: exactly one new Job (that variant's); the finished others are the same objects
    values.write_text(yaml.safe_dump({**SWEEP, "training": {**SWEEP["training"], "variants": {
        **SWEEP["training"]["variants"], "adam": {"params": {"optimizer": "Adam", "epochs": 9}}}}}))  # fmt: skip
    helm("upgrade", RELEASE, CHART, *ns, "-f", values, "--wait", *TIMEOUT)
    second = jobs_by_variant(cluster, namespace)
    assert {v: second[v] for v in ("sgd", "adamw")} == {v: first[v] for v in ("sgd", "adamw")}
    assert second["adam"][0] != first["adam"][0]
    assert {uid for _, uid in second.values()} - {uid for _, uid in first.values()} == {second["adam"][1]}
    cluster.wait("--for=condition=Complete", f"job/{second['adam'][0]}", *ns)

    # remove one variant: its Job goes, the others stay as they are
    values.write_text(yaml.safe_dump({**SWEEP, "training": {**SWEEP["training"], "variants": {
        "sgd": {}, "adam": {"params": {"optimizer": "Adam", "epochs": 9}}}}}))  # fmt: skip
    helm("upgrade", RELEASE, CHART, *ns, "-f", values, "--wait", *TIMEOUT)
    cluster.wait_until("the removed variant's Job to be deleted", lambda: "adamw" not in jobs_by_variant(cluster, namespace))
    assert jobs_by_variant(cluster, namespace) == {v: second[v] for v in ("sgd", "adam")}


def gpu_values(tmp_path, name: str, gpus: int, **distributed) -> str:
    """values-gpu.yaml's profile with GPUS per pod (requests and limits) and training.distributed."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"training": {
        "params": {"device": "auto", "batchSize": 128},
        "distributed": distributed,
        "resources": {"requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": gpus},
                      "limits": {"memory": "32Gi", "nvidia.com/gpu": gpus}}}}))  # fmt: skip
    return str(path)


def trainer_config(cluster, ns: str, pod: dict):
    """What the trainer in POD makes of its environment, as the kubelet builds it: the ConfigMaps of envFrom, then env
    with the Downward API's fields and $(VAR) references expanded (JOB_COMPLETION_INDEX is the Job controller's)."""
    from trainer.cli import build_parser
    from trainer.config import resolve

    [trainer] = [c for c in pod["spec"]["containers"] if c["name"] == "trainer"]
    env = {}
    for source in trainer.get("envFrom", []):
        if "configMapRef" in source:
            env.update(cluster.get(f"configmap/{source['configMapRef']['name']}", "-n", ns).get("data") or {})
    def field(path: str) -> str:  # the Downward API's paths the chart and the Job controller use
        if m := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
            return pod["metadata"][m[1]][m[2]]
        return {"metadata.name": pod["metadata"]["name"], "metadata.namespace": ns, "spec.nodeName": pod["spec"]["nodeName"]}[path]
    for e in trainer.get("env", []):
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), e["value"])
        elif "fieldRef" in (e.get("valueFrom") or {}):
            env[e["name"]] = field(e["valueFrom"]["fieldRef"]["fieldPath"])
    return resolve(build_parser().parse_args(["train"]), env), trainer


def test_distributed_trainings_schedule_onto_the_gpu_node_and_upgrade_like_one_job(cluster, helm, namespace, tmp_path):
    """values-gpu.yaml's two DDP examples on the fake 8-GPU node: 8 processes in one pod, then 2 pods x 4 GPUs (an
    Indexed Job, its headless Service, pod 0 the master, each pod's rank its completion index); an unchanged upgrade
    keeps the Job, a changed one replaces it; back to one node, the Service and the training NetworkPolicy go."""
    ns = ["-n", namespace]
    gpu = ["-f", CHART / "values-gpu.yaml"]

    # 1. one pod, 8 GPUs: torchrun with 8 processes, /dev/shm 8 x 8Gi
    helm("install", RELEASE, CHART, *ns, *gpu, "-f", gpu_values(tmp_path, "eight", 8, nprocPerNode=8), "--wait", *TIMEOUT)
    [job] = training_jobs(cluster, namespace)
    cluster.wait("--for=condition=Complete", f"job/{job['metadata']['name']}", *ns)
    assert job["spec"].get("completionMode", "NonIndexed") == "NonIndexed"
    [pod] = cluster.get("pods", *ns, "-l", f"job-name={job['metadata']['name']}")["items"]
    config, trainer = trainer_config(cluster, namespace, pod)
    assert (config.nproc_per_node, config.nnodes, config.world_size) == (8, 1, 8)
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == "8" and pod["spec"]["nodeName"] == "kwok-gpu-0"
    [shm] = [v for v in pod["spec"]["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"]["sizeLimit"] == "64Gi", shm
    assert not cluster.get("services", *ns, "-l", "app.kubernetes.io/component=training")["items"]

    # 2. two pods x 4 GPUs: a new Indexed Job, both pods on the GPU node, each its own rank, pod 0 the master by the
    # host name the headless Service gives it
    two = gpu_values(tmp_path, "two", 4, nnodes=2, nprocPerNode=4)
    helm("upgrade", RELEASE, CHART, *ns, *gpu, "-f", two, "--wait", *TIMEOUT)
    [job2] = training_jobs(cluster, namespace)
    name = job2["metadata"]["name"]
    assert name != job["metadata"]["name"]
    spec = job2["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == ("Indexed", 2, 2, 0)
    [service] = cluster.get("services", *ns, "-l", "app.kubernetes.io/component=training")["items"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    cluster.wait_until("both pods of the Indexed Job", lambda: len(cluster.get(
        "pods", *ns, "-l", f"job-name={name}")["items"]) == 2)
    pods = sorted(cluster.get("pods", *ns, "-l", f"job-name={name}")["items"],
                  key=lambda p: int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]))
    for rank, pod in enumerate(pods):
        config, trainer = trainer_config(cluster, namespace, pod)
        assert (config.nnodes, config.nproc_per_node, config.node_rank, config.world_size) == (2, 4, rank, 8)
        assert config.master_addr == f"{name}-0.{service['metadata']['name']}"
        assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == (f"{name}-{rank}", service["metadata"]["name"])
        assert trainer["resources"]["limits"]["nvidia.com/gpu"] == "4" and pod["spec"]["nodeName"] == "kwok-gpu-0"
    assert service["spec"]["selector"].items() <= pods[0]["metadata"]["labels"].items()
    assert names(manifest(helm, namespace), "NetworkPolicy").count(f"{RELEASE}-training") == 1
    cluster.wait("--for=condition=Complete", f"job/{name}", *ns)

    # 3. the same values again: the same Job (no second training); other values: a new one, the old one deleted
    helm("upgrade", RELEASE, CHART, *ns, *gpu, "-f", two, "--wait", *TIMEOUT)
    assert [j["metadata"]["uid"] for j in training_jobs(cluster, namespace)] == [job2["metadata"]["uid"]]
    helm("upgrade", RELEASE, CHART, *ns, *gpu, "-f", two, "--set", "training.params.epochs=7", "--wait", *TIMEOUT)
    [job3] = training_jobs(cluster, namespace)
    assert job3["metadata"]["name"] != name and job3["spec"]["completionMode"] == "Indexed"

    # 4. back to one GPU: one plain Job, no training Service or NetworkPolicy left
    helm("upgrade", RELEASE, CHART, *ns, *gpu, "--wait", *TIMEOUT)
    [job4] = training_jobs(cluster, namespace)
    assert job4["spec"].get("completionMode", "NonIndexed") == "NonIndexed"
    assert not cluster.get("services", *ns, "-l", "app.kubernetes.io/component=training")["items"]
    assert f"{RELEASE}-training" not in names(manifest(helm, namespace), "NetworkPolicy")
