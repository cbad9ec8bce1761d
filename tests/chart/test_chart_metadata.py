"""What Artifact Hub and `helm show` tell a user about the packaged chart, checked against what the chart really does.

- `artifacthub.io/images` (the images Artifact Hub lists and scans) is exactly the set of images the chart renders with
  values.yaml (bundled PostgreSQL and MinIO switched on) and with values-gpu.yaml (the CUDA trainer), so the two never
  drift; the images built from this repository carry the chart's appVersion.
- `artifacthub.io/changes` is well formed and this version has its CHANGELOG.md section; the prerelease and
  security flags agree with the version and the changes.
- `helm show readme|values|chart` of the packaged chart (`helm package`, as a release does) give the helm-docs README
  with its values table, values.yaml and these annotations.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import REPO

CHART = REPO / "charts" / "mlflow-stack"
TOOLS = REPO / ".tools" / "bin"
CHART_YAML = yaml.safe_load((CHART / "Chart.yaml").read_text())
ANNOTATIONS = CHART_YAML["annotations"]
CHANGE_KINDS = {"added", "changed", "deprecated", "removed", "fixed", "security"}  # Artifact Hub's kinds


def run_rendered():  # noqa: ANN201 - charts/mlflow-stack/tests/smoke/run_rendered.py as a module: find, resolve_env, ...
    spec = importlib.util.spec_from_file_location("run_rendered", CHART / "tests" / "smoke" / "run_rendered.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def helm(tmp_path: Path, *args: str, binary: str = "helm") -> str:
    exe = TOOLS / binary
    assert os.access(exe, os.X_OK), f"{exe} is missing: run `make setup`"
    homes = {f"HELM_{k}_HOME": str(tmp_path / "helm" / k.lower()) for k in ("CONFIG", "CACHE", "DATA")}
    result = subprocess.run([str(exe), *args], env={**os.environ, **homes}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{binary} {' '.join(args)}: {result.stderr}"
    return result.stdout


def images_in(manifests: str) -> set[str]:
    """Every container image (containers, init containers, hooks, the helm test pod) of rendered manifests."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("image"), str) and "name" in node:
                found.add(node["image"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for doc in yaml.safe_load_all(manifests):
        walk(doc)
    return found


def annotated_images() -> list[dict]:
    return yaml.safe_load(ANNOTATIONS["artifacthub.io/images"])


def test_artifacthub_images_are_the_images_the_chart_renders(tmp_path: Path) -> None:
    defaults = helm(tmp_path, "template", "t", str(CHART), "-n", "ml", "--set", "backend.type=postgresql")
    gpu = helm(tmp_path, "template", "t", str(CHART), "-n", "ml", "--set", "backend.type=postgresql",
               "-f", str(CHART / "values-gpu.yaml"))  # fmt: skip
    oidc = helm(tmp_path, "template", "t", str(CHART), "-n", "ml", "-f", str(CHART / "ci" / "oidc-values.yaml"))
    rendered = images_in(defaults) | images_in(gpu) | images_in(oidc)  # the oauth2-proxy sidecar of server.oidc too
    # A release may pin an annotated image by digest as well (repository:tag@sha256:...); the tag is what must match.
    listed = [entry["image"].split("@")[0] for entry in annotated_images()]
    assert len(listed) == len(set(listed)), f"an image is listed twice: {listed}"
    assert set(listed) == rendered, (
        f"artifacthub.io/images in Chart.yaml lists {sorted(set(listed) - rendered)} that the chart does not render, "
        f"and misses {sorted(rendered - set(listed))} that it does"
    )
    app = CHART_YAML["appVersion"]
    for ours in ("ghcr.io/mlflow-stack/mlflow-stack-server:", "ghcr.io/mlflow-stack/mlflow-stack-trainer:"):
        assert f"{ours}{app}" in listed, f"{ours}{app} (the chart's appVersion) is not in artifacthub.io/images"
    cuda = f"ghcr.io/mlflow-stack/mlflow-stack-trainer:{app}-cuda"
    assert cuda in listed, f"{cuda} is not in artifacthub.io/images (values-gpu.yaml must select training.image.variant cuda)"
    assert all(entry.get("name") for entry in annotated_images())


def test_artifacthub_changes_match_the_changelog_and_flags() -> None:
    version = CHART_YAML["version"]
    changes = yaml.safe_load(ANNOTATIONS["artifacthub.io/changes"])
    assert changes, "artifacthub.io/changes is empty"
    for change in changes:
        assert change.get("kind") in CHANGE_KINDS, f"{change}: kind must be one of {sorted(CHANGE_KINDS)}"
        assert isinstance(change.get("description"), str) and change["description"].strip(), change
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(version)}\]", changelog, re.M), f"CHANGELOG.md has no '## [{version}]' section"
    security = any(c["kind"] == "security" for c in changes)
    assert ANNOTATIONS["artifacthub.io/containsSecurityUpdates"] == str(security).lower()
    assert ANNOTATIONS["artifacthub.io/prerelease"] == str("-" in version.split("+")[0]).lower()
    links = yaml.safe_load(ANNOTATIONS["artifacthub.io/links"])
    assert all(link["name"] and link["url"].startswith("https://") for link in links), links


@pytest.mark.parametrize("binary", ["helm", "helm3"])
def test_helm_show_of_the_packaged_chart_gives_the_generated_docs(tmp_path: Path, binary: str) -> None:
    out = helm(tmp_path, "package", str(CHART), "-d", str(tmp_path / "dist"))
    [package] = (tmp_path / "dist").glob("mlflow-stack-*.tgz")
    assert package.name == f"mlflow-stack-{CHART_YAML['version']}.tgz", out

    readme = helm(tmp_path, "show", "readme", str(package), binary=binary)
    assert readme.rstrip("\n") == (CHART / "README.md").read_text().rstrip("\n")
    assert "## Values" in readme and "| server.image.repository | string |" in readme, "no helm-docs values table"
    assert "{{" not in readme, "the README template, not the generated README"

    assert helm(tmp_path, "show", "values", str(package), binary=binary).rstrip("\n") == \
        (CHART / "values.yaml").read_text().rstrip("\n")  # fmt: skip
    shown = yaml.safe_load(helm(tmp_path, "show", "chart", str(package), binary=binary))
    assert shown["annotations"] == ANNOTATIONS
    assert (shown["version"], shown["appVersion"]) == (CHART_YAML["version"], CHART_YAML["appVersion"])


def test_the_released_chart_pins_both_trainer_builds(tmp_path: Path) -> None:
    """`make release` pins the server and both trainer builds in the packaged chart (ci/lib/pin_images.py, as
    ci/release.sh calls it): the defaults run the CPU trainer by its digest, values-gpu.yaml the CUDA one by its own."""
    chart = tmp_path / "chart"
    subprocess.run(["cp", "-r", str(CHART), str(chart)], check=True)
    digests = {name: "sha256:" + char * 64 for name, char in (("server", "a"), ("cpu", "b"), ("cuda", "c"))}
    pin = [sys.executable, str(REPO / "ci" / "lib" / "pin_images.py"), str(chart / "values.yaml")]
    repo = "registry.example.com/ml/mlflow-stack"
    app = CHART_YAML["appVersion"]
    subprocess.run([*pin, "server", f"repository={repo}-server", f"tag={app}", f"digest={digests['server']}"],
                   check=True)  # fmt: skip
    subprocess.run([*pin, "training", f"repository={repo}-trainer", f"digest={digests['cpu']}",
                    f"cudaDigest={digests['cuda']}"], check=True)  # fmt: skip
    helm(tmp_path, "package", str(chart), "-d", str(tmp_path / "dist"))
    [package] = (tmp_path / "dist").glob("mlflow-stack-*.tgz")

    values = yaml.safe_load(helm(tmp_path, "show", "values", str(package)))
    assert (values["training"]["image"]["digest"], values["training"]["image"]["cudaDigest"]) == \
        (digests["cpu"], digests["cuda"])  # fmt: skip
    shown = helm(tmp_path, "show", "values", str(package))
    assert shown.count("# --") == (CHART / "values.yaml").read_text().count("# --"), "pinning lost value docs"

    def ours(*args: str) -> set[str]:
        return {i for i in images_in(helm(tmp_path, "template", "t", str(package), "-n", "ml", *args)) if repo in i}

    cpu, gpu = ours(), ours("-f", str(CHART / "values-gpu.yaml"))
    server = f"{repo}-server:{app}@{digests['server']}"
    assert cpu == {server, f"{repo}-trainer:{app}@{digests['cpu']}"}, cpu
    assert gpu == {server, f"{repo}-trainer:{app}-cuda@{digests['cuda']}"}, (
        f"values-gpu.yaml on the released chart must run the CUDA trainer by its digest: {gpu}"
    )
