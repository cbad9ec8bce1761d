"""The images install exactly what the test suite installs and runs (they cannot be built here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from harness import REPO, trainer_cmd, trainer_env

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def dockerfile(name: str) -> str:
    return (REPO / "images" / name / "Dockerfile").read_text()


def test_trainer_image_installs_the_train_extra_and_runs_the_console_script() -> None:
    text = dockerfile("trainer")
    assert re.search(r'pip install [^\n]*"\.\[train\]"', text), "the image must install the pinned train extra"
    assert 'ENTRYPOINT ["trainer"]' in text
    assert PYPROJECT["project"]["scripts"]["trainer"] == "trainer.cli:main"
    assert re.search(r"^USER 10001", text, re.M), "the image must not run as root"


def test_server_image_installs_every_pin_of_the_server_extra() -> None:
    """The chart runs this image; a package of the extra missing here (e.g. the metrics exporter) crashes the server."""
    text = dockerfile("mlflow-server")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    install = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], re.search(r"pip install ((?:[^\n]*\\\n)*[^\n]*)", text).group(1))
    for spec in PYPROJECT["project"]["optional-dependencies"]["server"]:
        assert f'"{spec}"' in install, f"images/mlflow-server/Dockerfile does not install {spec}"


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
