"""ci/version_check.py (the `ct lint` version rule and the recorded release, run by ci/chart-test.sh) on throwaway git
repositories.

Each test builds a small repository shaped like this one (chart, images/, src/, pyproject.toml), records a release in
Chart.yaml (`--record-release`) and tags it the way chart-releaser names it (or not: the recorded release needs no
tag), changes something and runs the script as `make test` does: what counts is its exit status and the line it
prints.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "ci" / "version_check.py"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1"}  # fmt: skip

PYPROJECT = """\
[project]
name = "demo"
dependencies = ["mlflow==3.17.2"]
[project.optional-dependencies]
train = ["torch==2.15.0"]
dev = ["pytest==9.2.0"]
[tool.pytest.ini_options]
timeout = 900
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], env={**os.environ, **GIT_ENV}, check=True,
                          capture_output=True, text=True).stdout  # fmt: skip


def write(repo: Path, path: str, text: str) -> None:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)


def set_versions(repo: Path, version: str, app_version: str) -> None:
    """Chart.yaml with these versions; its annotations (the recorded release) stay as they are."""
    chart = repo / "charts/mlflow-stack/Chart.yaml"
    kept = chart.read_text().partition("annotations:")[1:] if chart.exists() else ()
    head = f'apiVersion: v2\nname: mlflow-stack\nversion: {version}\nappVersion: "{app_version}"\n'
    write(repo, "charts/mlflow-stack/Chart.yaml", head + "".join(kept))


def recorded(repo: Path) -> tuple[str, str]:
    annotations = yaml.safe_load((repo / "charts/mlflow-stack/Chart.yaml").read_text())["annotations"]
    return annotations["mlflow-stack.io/released-app-version"], annotations["mlflow-stack.io/released-app-inputs"]


def commit(repo: Path, message: str = "change") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def run_check(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--repo", str(repo), *args], capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}, timeout=60)  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose 0.1.0 (appVersion 0.1.0) is released: tagged mlflow-stack-0.1.0, HEAD one commit past it."""
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    set_versions(r, "0.1.0", "0.1.0")
    write(r, "charts/mlflow-stack/values.yaml", "replicas: 1\n")
    write(r, "charts/mlflow-stack/templates/deployment.yaml", "kind: Deployment\n")
    write(r, "images/trainer/Dockerfile", "FROM python:3.11-slim-bookworm\n")
    write(r, "src/trainer/cli.py", "print('train')\n")
    write(r, "pyproject.toml", PYPROJECT)
    write(r, "README.md", "# demo\n")
    write(r, ".gitignore", "__pycache__/\n")
    assert run_check(r, "--record-release").returncode == 0  # the release's last step
    commit(r, "release 0.1.0")
    git(r, "tag", "mlflow-stack-0.1.0")
    write(r, "README.md", "# demo\n\nMore words.\n")  # outside the chart and the images: no bump needed
    commit(r, "docs")
    return r


def assert_fails(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    fail = [line for line in result.stderr.splitlines() if line.startswith("version-check: FAIL: ")]
    assert fail, result.stderr
    for w in words:
        assert w in fail[0], fail


def assert_passes(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "version-check: ok", result.stdout


def test_no_release_tag_passes(tmp_path: Path) -> None:
    r = tmp_path / "fresh"
    r.mkdir()
    git(r, "init", "-q")
    set_versions(r, "0.1.0", "0.1.0")
    write(r, "src/trainer/cli.py", "print('train')\n")
    assert run_check(r, "--record-release").returncode == 0
    commit(r, "first")
    result = run_check(r)
    assert_passes(result)
    assert "no release tag yet" in result.stdout
    assert "the images' inputs match those recorded for the release of appVersion 0.1.0" in result.stdout


def test_without_a_recorded_release_cannot_check(tmp_path: Path) -> None:
    r = tmp_path / "fresh"
    r.mkdir()
    git(r, "init", "-q")
    set_versions(r, "0.1.0", "0.1.0")
    commit(r, "first")
    result = run_check(r)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "mlflow-stack.io/released-app-version" in result.stderr and "--record-release" in result.stderr


@pytest.fixture
def untagged(repo: Path) -> Path:
    """The same repository with its release recorded in Chart.yaml but never tagged (this repository's state)."""
    git(repo, "tag", "-d", "mlflow-stack-0.1.0")
    return repo


def test_without_tags_an_images_change_needs_an_app_version_bump(untagged: Path) -> None:
    write(untagged, "src/trainer/cli.py", "print('train with DDP')\n")
    commit(untagged)
    result = run_check(untagged)
    assert_fails(result, "the images' inputs", "differ from those of the release of appVersion 0.1.0",
                 "Chart.yaml appVersion is 0.1.0, not above 0.1.0", "bump appVersion")  # fmt: skip
    assert "no release tag yet" in result.stdout
    set_versions(untagged, "0.2.0", "0.2.0")
    assert_passes(run_check(untagged))
    write(untagged, "images/trainer/Dockerfile", "FROM python:3.12-slim-bookworm\n")  # the unreleased 0.2.0 grows
    assert_passes(run_check(untagged))


def test_recorded_inputs_are_what_the_images_install(untagged: Path) -> None:
    write(untagged, "pyproject.toml", PYPROJECT.replace("pytest==9.2.0", "pytest==9.3.0").replace("900", "1800"))
    write(untagged, "src/trainer/__pycache__/cli.cpython-311.pyc", "ignored by git")
    write(untagged, "charts/mlflow-stack/values.yaml", "replicas: 2\n")  # the chart is not an image input
    write(untagged, "README.md", "# other words\n")
    assert_passes(run_check(untagged))
    for change in (lambda: write(untagged, "pyproject.toml", PYPROJECT.replace("torch==2.15.0", "torch==2.16.0")),
                   lambda: write(untagged, "src/trainer/new.py", "print('untracked')\n"),
                   lambda: (untagged / "images/trainer/Dockerfile").chmod(0o755),
                   lambda: (untagged / "src/trainer/cli.py").unlink()):  # fmt: skip
        git(untagged, "stash", "-q", "--include-untracked")
        git(untagged, "checkout", "-q", ".")
        change()
        assert_fails(run_check(untagged), "differ from those of the release of appVersion 0.1.0")


def test_record_release_refuses_a_broken_rule_then_records_the_bump(untagged: Path) -> None:
    chart = untagged / "charts/mlflow-stack/Chart.yaml"
    write(untagged, "src/trainer/cli.py", "print('train with DDP')\n")
    before = chart.read_text()
    result = run_check(untagged, "--record-release")
    assert result.returncode == 1 and "not recorded" in result.stderr, result.stdout + result.stderr
    assert chart.read_text() == before
    set_versions(untagged, "0.2.0", "0.2.0")
    result = run_check(untagged, "--record-release")
    assert result.returncode == 0, result.stdout + result.stderr
    assert recorded(untagged)[0] == "0.2.0" and recorded(untagged)[1] != yaml.safe_load(before)["annotations"][
        "mlflow-stack.io/released-app-inputs"]  # fmt: skip
    assert chart.read_text().startswith('apiVersion: v2\nname: mlflow-stack\nversion: 0.2.0\nappVersion: "0.2.0"\n')
    commit(untagged, "release 0.2.0")
    assert_passes(run_check(untagged))
    write(untagged, "src/trainer/cli.py", "print('train faster')\n")  # after the release of 0.2.0: 0.3.0
    assert_fails(run_check(untagged), "release of appVersion 0.2.0", "appVersion is 0.2.0, not above 0.2.0")


def test_app_version_below_the_recorded_release_fails(untagged: Path) -> None:
    set_versions(untagged, "0.2.0", "0.0.9")
    assert_fails(run_check(untagged), "appVersion is 0.0.9, below the released 0.1.0")


def test_a_release_tag_needs_its_release_recorded(repo: Path) -> None:
    write(repo, "src/trainer/cli.py", "print('train with DDP')\n")
    set_versions(repo, "0.2.0", "0.2.0")
    commit(repo, "release 0.2.0")
    git(repo, "tag", "mlflow-stack-0.2.0")
    assert_fails(run_check(repo, "--expect-tag", "mlflow-stack-0.2.0"),
                 "the release mlflow-stack-0.2.0 is not recorded", "--record-release")  # fmt: skip
    assert run_check(repo, "--record-release").returncode == 0
    commit(repo, "release 0.2.0, recorded")
    git(repo, "tag", "-f", "mlflow-stack-0.2.0")
    assert_passes(run_check(repo, "--expect-tag", "mlflow-stack-0.2.0"))


def test_this_repository_keeps_the_rules() -> None:
    """Chart.yaml's recorded release and appVersion against this checkout's images' inputs (issue 33: chart 1.0.0
    shipped appVersion 0.1.0 for images that had changed since 0.1.0's)."""
    result = run_check(REPO)
    assert_passes(result)


def test_unchanged_chart_and_images_pass(repo: Path) -> None:
    result = run_check(repo)
    assert_passes(result)
    assert "since mlflow-stack-0.1.0: 0 chart files changed" in result.stdout


def test_chart_change_without_version_bump_fails_naming_version_and_tag(repo: Path) -> None:
    write(repo, "charts/mlflow-stack/values.yaml", "replicas: 2\n")
    commit(repo)
    assert_fails(run_check(repo), "Chart.yaml version is 0.1.0", "since mlflow-stack-0.1.0",
                 "charts/mlflow-stack/values.yaml")  # fmt: skip


def test_uncommitted_and_untracked_chart_changes_count(repo: Path) -> None:
    write(repo, "charts/mlflow-stack/templates/new.yaml", "kind: Service\n")  # untracked: `git diff` alone misses it
    assert_fails(run_check(repo), "Chart.yaml version", "charts/mlflow-stack/templates/new.yaml")


def test_chart_change_with_version_bump_passes(repo: Path) -> None:
    write(repo, "charts/mlflow-stack/values.yaml", "replicas: 2\n")
    set_versions(repo, "0.2.0", "0.1.0")
    commit(repo)
    assert_passes(run_check(repo))


def test_version_below_the_tag_fails(repo: Path) -> None:
    write(repo, "charts/mlflow-stack/values.yaml", "replicas: 2\n")
    set_versions(repo, "0.0.9", "0.1.0")
    assert_fails(run_check(repo), "version is 0.0.9, not above 0.1.0")


def test_images_change_without_app_version_bump_fails_naming_app_version(repo: Path) -> None:
    write(repo, "images/trainer/Dockerfile", "FROM python:3.12-slim-bookworm\n")
    commit(repo)
    assert_fails(run_check(repo), "appVersion is 0.1.0", "since mlflow-stack-0.1.0", "images/trainer/Dockerfile")


def test_src_change_with_app_version_but_no_version_bump_fails_naming_version(repo: Path) -> None:
    # appVersion lives in Chart.yaml: bumping it is a chart change, so `version` must move too.
    write(repo, "src/trainer/cli.py", "print('train faster')\n")
    set_versions(repo, "0.1.0", "0.2.0")
    commit(repo)
    result = run_check(repo)
    assert_fails(result, "Chart.yaml version is 0.1.0", "charts/mlflow-stack/Chart.yaml")
    assert "appVersion" not in result.stderr


def test_src_change_with_both_bumps_passes(repo: Path) -> None:
    write(repo, "src/trainer/cli.py", "print('train faster')\n")
    set_versions(repo, "0.1.1", "0.1.1")
    commit(repo)
    assert_passes(run_check(repo))


def test_image_pin_change_needs_app_version_but_dev_pin_does_not(repo: Path) -> None:
    write(repo, "pyproject.toml", PYPROJECT.replace("pytest==9.2.0", "pytest==9.3.0").replace("900", "1800"))
    assert_passes(run_check(repo))
    write(repo, "pyproject.toml", PYPROJECT.replace("torch==2.15.0", "torch==2.16.0"))
    assert_fails(run_check(repo), "appVersion is 0.1.0", "pyproject.toml")


def test_on_a_tagged_release_commit_compares_with_the_release_before(repo: Path) -> None:
    write(repo, "charts/mlflow-stack/values.yaml", "replicas: 2\n")
    set_versions(repo, "0.2.0", "0.1.0")
    commit(repo, "release 0.2.0")
    git(repo, "tag", "mlflow-stack-0.2.0")
    git(repo, "tag", "mlflow-stack-server-notes")  # shares the prefix, not a release tag
    result = run_check(repo, "--expect-tag", "mlflow-stack-0.2.0")
    assert_passes(result)
    assert "since mlflow-stack-0.1.0: 2 chart files changed (version 0.1.0 -> 0.2.0)" in result.stdout
    # The next chart change is checked against 0.2.0.
    write(repo, "charts/mlflow-stack/values.yaml", "replicas: 3\n")
    commit(repo)
    assert_fails(run_check(repo), "since mlflow-stack-0.2.0", "version is 0.2.0, not above 0.2.0")


def test_expect_tag_must_name_the_chart_version(repo: Path) -> None:
    assert_fails(run_check(repo, "--expect-tag", "mlflow-stack-0.2.0"), "tag mlflow-stack-0.2.0",
                 "Chart.yaml version is 0.1.0")  # fmt: skip


def test_version_that_is_not_semver_cannot_be_checked(repo: Path) -> None:
    set_versions(repo, "0.2", "0.1.0")
    result = run_check(repo)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "version '0.2' is not SemVer" in result.stderr


def test_semver_precedence() -> None:
    spec = importlib.util.spec_from_file_location("version_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The ordering example of semver.org, section 11, plus build metadata (ignored) and a minor above a patch.
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
               "1.0.0-rc.1", "1.0.0+build.5", "1.0.1", "1.1.0", "1.10.0", "2.0.0"]  # fmt: skip
    keys = [module.semver_key(v) for v in ordered]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert module.semver_key("1.0.0+build.5") == module.semver_key("1.0.0")
    assert [module.semver_key(v) for v in ("1.0", "01.0.0", "v1.0.0", "")] == [None] * 4


def test_shallow_clone_says_why_there_is_no_tag(repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))
    result = run_check(clone)
    assert_passes(result)
    assert "no release tag yet" in result.stdout and "shallow clone" in result.stdout
    assert "the images' inputs match those recorded for the release of appVersion 0.1.0" in result.stdout


def test_uncommitted_change_on_the_tagged_commit_is_checked_against_that_tag(repo: Path) -> None:
    git(repo, "tag", "mlflow-stack-0.1.1-notes-are-not-semver-prefixed")  # noise: not SemVer after the prefix
    set_versions(repo, "0.2.0", "0.1.0")
    write(repo, "charts/mlflow-stack/values.yaml", "replicas: 2\n")
    commit(repo, "release 0.2.0")
    git(repo, "tag", "mlflow-stack-0.2.0")
    write(repo, "charts/mlflow-stack/values.yaml", "replicas: 3\n")  # edited right after tagging, not committed
    assert_fails(run_check(repo), "since mlflow-stack-0.2.0", "version is 0.2.0, not above 0.2.0")
