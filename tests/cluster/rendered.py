"""Turn the chart's rendered containers into local processes (the hook and object store tests here).

A container becomes argv + environment + working directory exactly as the kubelet would build them from the
rendered YAML — command/args (the image's ENTRYPOINT/CMD from images/*/Dockerfile when the container has none), env
values, secretKeyRef/configMapKeyRef/envFrom from the rendered Secrets and ConfigMaps (and those the credentials hook
would create, ci/lib/hook_secrets.py), fieldRef from made-up pod metadata — with two substitutions, both because nothing may be created outside the test's directories:
- a volume mount whose path does not exist here (`/workspace`, `/etc/mlflow-auth`, ...) becomes a directory of the
  test, and the mount path is rewritten to it in args, env values, workingDir and the mounted files;
- the image's executables (`mlflow`, `python`, `trainer`) resolve to this repository's virtual environment, which
  installs the images' pinned packages (pyproject extras `server` and `train`).
Service DNS names are not rewritten: the processes run in a network namespace whose /etc/hosts maps them to
127.0.0.1 (tests/cluster/netns_run.py).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from clusterlib import ROOT

# ci/lib/hook_secrets.py, shared with the chart's smoke runner; loaded by path, not through sys.path: ci/lib also holds
# a cluster.py that would shadow the tests' `cluster` package
_spec = importlib.util.spec_from_file_location("mlflow_stack_hook_secrets", ROOT / "ci" / "lib" / "hook_secrets.py")
_hook_secrets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_hook_secrets)
generated_secrets = _hook_secrets.generated_secrets

IMAGES = ROOT / "images"


def dockerfile_exec(image_dir: Path) -> tuple[list[str], list[str]]:
    """(ENTRYPOINT, CMD) of the final stage of images/<dir>/Dockerfile, exec form only."""
    entry: list[str] = []
    cmd: list[str] = []
    for line in (image_dir / "Dockerfile").read_text().splitlines():
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "FROM":
            entry, cmd = [], []
        elif word.upper() == "ENTRYPOINT":
            entry = json.loads(rest)
        elif word.upper() == "CMD":
            cmd = json.loads(rest)
    return entry, cmd


def image_dir_for(image: str) -> Path:
    """images/<name> whose name the image repository ends with (ghcr.io/x/mlflow-stack-server -> mlflow-server)."""
    repo = image.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    matches = [d for d in IMAGES.iterdir() if (d / "Dockerfile").is_file() and repo.endswith(d.name.split("-")[-1])]
    assert len(matches) == 1, f"no single images/* for {image}: {matches}"
    return matches[0]


@dataclass
class Manifest:
    docs: list[dict]
    namespace: str

    @classmethod
    def parse(cls, text: str, namespace: str) -> Manifest:
        """The rendered documents plus the Secrets the credentials hook would create (random values, as the hook's)."""
        docs = [d for d in yaml.safe_load_all(text) if d]
        return cls(docs + generated_secrets(docs), namespace)

    def by_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name_suffix: str = "") -> dict:
        found = [d for d in self.by_kind(kind) if d["metadata"]["name"].endswith(name_suffix)]
        assert len(found) == 1, f"expected one {kind} named *{name_suffix}, found {[d['metadata']['name'] for d in found]}"
        return found[0]

    def data(self, kind: str, name: str) -> dict[str, str]:
        """Decoded data of a rendered Secret or ConfigMap."""
        [obj] = [d for d in self.by_kind(kind) if d["metadata"]["name"] == name] or [None]
        assert obj is not None, f"{kind}/{name} is referenced but not rendered"
        out = dict(obj.get("stringData") or {})
        for key, value in (obj.get("data") or {}).items():
            out[key] = base64.b64decode(value).decode() if kind == "Secret" else value
        return out

    def has(self, kind: str, name: str, key: str) -> bool:
        """Whether a rendered Secret or ConfigMap `name` exists and holds `key` (an optional reference may lack it)."""
        objs = [d for d in self.by_kind(kind) if d["metadata"]["name"] == name]
        return any(key in (o.get("data") or {}) or key in (o.get("stringData") or {}) for o in objs)

    def service_hosts(self) -> list[str]:
        """Every name a pod could use for a rendered Service."""
        hosts = []
        for svc in self.by_kind("Service"):
            name = svc["metadata"]["name"]
            hosts += [name, f"{name}.{self.namespace}", f"{name}.{self.namespace}.svc",
                      f"{name}.{self.namespace}.svc.cluster.local"]  # fmt: skip
        return hosts


def pod_spec(obj: dict) -> dict:
    spec = obj["spec"]
    return spec["template"]["spec"] if "template" in spec else spec


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    files: dict[str, str] = field(default_factory=dict)  # path -> content to write before starting

    def to_json(self) -> dict:
        return {"name": self.name, "argv": self.argv, "env": self.env, "cwd": self.cwd, "files": self.files}

    def __str__(self) -> str:
        return f"{self.name}: (cd {self.cwd} && {shlex.join(self.argv)})"


def find_container(obj: dict, name: str) -> dict:
    spec = pod_spec(obj)
    [c] = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name]
    return c


def container_env(m: Manifest, obj: dict, container_name: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom first, then env (which wins)."""
    c = find_container(obj, container_name)
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
            if key in src:
                env.update(m.data(kind, src[key]["name"]))
    fields = {"metadata.name": f"{obj['metadata']['name']}-local", "metadata.namespace": m.namespace,
              "spec.nodeName": "local", "metadata.labels['batch.kubernetes.io/job-name']": obj["metadata"]["name"]}  # fmt: skip
    for e in c.get("env", []):
        source = e.get("valueFrom")
        if source is None:
            env[e["name"]] = e.get("value", "")
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            if ref.get("optional") and not m.has("Secret", ref["name"], ref["key"]):  # the kubelet leaves it unset
                continue
            env[e["name"]] = m.data("Secret", ref["name"])[ref["key"]]
        elif "configMapKeyRef" in source:
            env[e["name"]] = m.data("ConfigMap", source["configMapKeyRef"]["name"])[source["configMapKeyRef"]["key"]]
        elif "fieldRef" in source:
            env[e["name"]] = fields[source["fieldRef"]["fieldPath"]]
        else:
            raise AssertionError(f"unsupported env source in {container_name}: {e}")
    return env


def container_process(m: Manifest, obj: dict, container_name: str, workdir: Path, venv_bin: Path) -> Process:
    """The container as a local process (see the module's docstring for the two substitutions)."""
    c = find_container(obj, container_name)
    volumes = {v["name"]: v for v in pod_spec(obj).get("volumes", [])}

    # volume mounts -> directories of the test (files of Secret/ConfigMap volumes written there)
    rewrites: dict[str, str] = {}
    files: dict[str, str] = {}
    for mount in c.get("volumeMounts", []):
        path = mount["mountPath"]
        if os.path.isdir(path) and os.access(path, os.W_OK):  # /tmp, /dev/shm: use them as they are
            continue
        local = workdir / "volumes" / obj["metadata"]["name"] / mount["name"] / mount.get("subPath", "")
        local.mkdir(parents=True, exist_ok=True)
        rewrites[path] = str(local)
        vol = volumes.get(mount["name"], {})  # a volumeClaimTemplate has no entry: an empty directory
        for kind, key in (("Secret", "secret"), ("ConfigMap", "configMap")):
            if key in vol:
                ref = vol[key].get("secretName") or vol[key].get("name")
                for item, content in m.data(kind, ref).items():
                    files[str(local / item)] = content

    def rewrite(text: str) -> str:
        for path in sorted(rewrites, key=len, reverse=True):
            text = text.replace(path, rewrites[path])
        return text

    if "command" in c:  # the image's ENTRYPOINT/CMD do not matter (and a third-party image has no images/* dir)
        argv = c["command"] + c.get("args", [])
    else:
        entry, cmd = dockerfile_exec(image_dir_for(c["image"]))
        argv = entry + c.get("args", cmd)
    if (venv_bin / argv[0]).exists():
        argv[0] = str(venv_bin / argv[0])
    env = {k: rewrite(v) for k, v in container_env(m, obj, container_name).items()}
    env["PATH"] = f"{venv_bin}:/usr/local/bin:/usr/bin:/bin"
    cwd = rewrite(c.get("workingDir", "/tmp"))
    Path(cwd).mkdir(parents=True, exist_ok=True)
    return Process(container_name, [rewrite(a) for a in argv], env, cwd, {k: rewrite(v) for k, v in files.items()})
