#!/usr/bin/env python3
"""The chart's version rules: the version check of helm/chart-testing's `ct lint`, small and our own (chart-testing is
not served by the Go module proxy CI can reach), plus one that needs no tag. Rules: docs/releasing.md.

Usage: ci/version_check.py [--repo DIR] [--expect-tag TAG] [--record-release]

  The images' inputs are what the two images install: the files under images/ and src/ (tracked or untracked, not
  ignored, in the working tree) and pyproject.toml outside its dev extra and [tool.*] (the CUDA trainer too).

  The last release is recorded in Chart.yaml itself, so the rule holds without tags and in a shallow clone: the
  annotations mlflow-stack.io/released-app-version (its appVersion) and mlflow-stack.io/released-app-inputs (the
  sha256 of its images' inputs).
  - the images' inputs differ from the recorded ones
      -> Chart.yaml `appVersion` must be above the recorded one (one tag, one build)
  The last release tag, when there is one, is the highest mlflow-stack-<SemVer> tag (chart-releaser's naming) in
  HEAD's history; on a tagged release commit with nothing changed since, the one before it (so a tag push checks its
  own bumps). Since it:
  - anything under charts/mlflow-stack/ changed (the working tree counts, untracked files too)
      -> Chart.yaml `version` must be above the tag's
  - the images' inputs changed
      -> Chart.yaml `appVersion` must be above the tag's (and since that edits Chart.yaml, `version` too)
  No such tag yet: says so and checks the recorded release only.
  --expect-tag TAG also fails unless TAG is mlflow-stack-<version> (the release workflow passes the tag it runs for)
  and the recorded release is this one: this appVersion and these inputs.
  --record-release writes this appVersion and the sha256 of these inputs into the two annotations (the last step of
  a release's commit); it refuses while a rule is broken.

Exit status: 0 rules kept, 1 a rule broken (the message names the field and the tag), 2 cannot check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

CHART_NAME = "mlflow-stack"
CHART_DIR = "charts/mlflow-stack"
TAG_PREFIX = f"{CHART_NAME}-"
APP_INPUTS = ("images", "src", "pyproject.toml")
BUMPS = "patch: chart fixes or docs; minor: new values or features; major: breaking values changes"
RELEASED_APP_VERSION = "mlflow-stack.io/released-app-version"
RELEASED_APP_INPUTS = "mlflow-stack.io/released-app-inputs"
INPUTS = "images/, src/, the image pins in pyproject.toml"

# SemVer 2.0.0 (https://semver.org), as Helm requires of `version`.
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
                    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")  # fmt: skip


class CannotCheck(Exception):
    """The repository or Chart.yaml is not in a state the rules can be checked on (exit 2)."""


def semver_key(version: str) -> tuple | None:
    """A sort key with SemVer precedence, or None for a version that is not SemVer."""
    m = SEMVER.match(version)
    if not m:
        return None
    major, minor, patch, pre = m.groups()
    # A pre-release sorts before its release; its dot-separated identifiers compare as numbers when numeric, numbers
    # before words, and a shorter list first when the shared identifiers are equal.
    pre_key = (1,) if pre is None else (0, *((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    return int(major), int(minor), int(patch), pre_key


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise CannotCheck(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def last_release_tag(repo: Path) -> str | None:
    # On a release commit (tagged, nothing changed since) compare with the release before, so that the tag's own
    # workflow checks that release's bumps; once anything changes after it, even uncommitted, its tag is the baseline.
    at_head = [] if changed_since(repo, "HEAD", (CHART_DIR, *APP_INPUTS)) else ["--no-contains", "HEAD"]
    tags = git(repo, "tag", "--merged", "HEAD", *at_head, "--list", f"{TAG_PREFIX}*").split()
    # Skip names that only share the prefix (mlflow-stack-server-…): the rest must be a SemVer version.
    versioned = [(key, t) for t in tags if (key := semver_key(t[len(TAG_PREFIX):])) is not None]
    return max(versioned)[1] if versioned else None


def chart_versions(text: str, where: str) -> tuple[str, str]:
    try:
        chart = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise CannotCheck(f"{where}: {e}") from e
    version, app_version = str(chart.get("version", "")), str(chart.get("appVersion", ""))
    for field, value in (("version", version), ("appVersion", app_version)):
        if semver_key(value) is None:
            raise CannotCheck(f"{where}: {field} {value!r} is not SemVer (MAJOR.MINOR.PATCH[-PRERELEASE])")
    return version, app_version


def changed_since(repo: Path, tag: str, paths: tuple[str, ...]) -> list[str]:
    """Files under PATHS that differ between TAG and the working tree, untracked ones included."""
    diff = git(repo, "diff", "--name-only", tag, "--", *paths).split("\n")
    untracked = git(repo, "ls-files", "--others", "--exclude-standard", "--", *paths).split("\n")
    return sorted({f for f in diff + untracked if f})


def image_pins(pyproject: str) -> dict:
    """pyproject.toml without what no image installs: the dev extra (test tools) and [tool.*] (pytest settings)."""
    data = tomllib.loads(pyproject)
    data.pop("tool", None)
    data.get("project", {}).get("optional-dependencies", {}).pop("dev", None)
    return data


def app_inputs_changed(repo: Path, tag: str) -> list[str]:
    changed = changed_since(repo, tag, APP_INPUTS)
    if "pyproject.toml" in changed:
        try:
            old = git(repo, "show", f"{tag}:pyproject.toml")
        except CannotCheck:
            old = ""  # not in the tagged tree: a change like any other
        new = (repo / "pyproject.toml").read_text() if (repo / "pyproject.toml").exists() else ""
        if old and new and image_pins(old) == image_pins(new):
            changed.remove("pyproject.toml")
    return changed


def app_inputs_digest(repo: Path) -> str:
    """sha256 of the images' inputs in the working tree: each file under images/ and src/ that git tracks or would
    add (its path, whether it is executable, its content), then pyproject.toml's image pins (canonical JSON)."""
    listed = git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *APP_INPUTS[:2])
    digest = hashlib.sha256()
    for name in sorted({f for f in listed.split("\0") if f}):
        path = repo / name
        if path.is_symlink():
            kind, content = "link", os.readlink(path).encode()
        elif path.is_file():
            kind, content = ("exec" if os.access(path, os.X_OK) else "file"), path.read_bytes()
        else:
            continue  # deleted in the working tree
        digest.update(f"{name}\0{kind}\0{hashlib.sha256(content).hexdigest()}\n".encode())
    pyproject = repo / "pyproject.toml"
    if pyproject.is_file():
        try:
            pins = image_pins(pyproject.read_text())
        except tomllib.TOMLDecodeError as e:
            raise CannotCheck(f"pyproject.toml: {e}") from e
        digest.update(b"pyproject.toml image pins\0" + json.dumps(pins, sort_keys=True).encode())
    return f"sha256:{digest.hexdigest()}"


def released(chart_text: str) -> tuple[str, str]:
    """The recorded last release: its appVersion and the digest of its images' inputs (Chart.yaml annotations)."""
    annotations = (yaml.safe_load(chart_text) or {}).get("annotations") or {}
    version, inputs = str(annotations.get(RELEASED_APP_VERSION, "")), str(annotations.get(RELEASED_APP_INPUTS, ""))
    if not version or not inputs:
        raise CannotCheck(f"{CHART_DIR}/Chart.yaml has no annotations {RELEASED_APP_VERSION} and {RELEASED_APP_INPUTS}"
                          " (the last release's appVersion and the sha256 of its images' inputs): record them with "
                          "ci/version_check.py --record-release")  # fmt: skip
    if semver_key(version) is None:
        raise CannotCheck(f"{CHART_DIR}/Chart.yaml: {RELEASED_APP_VERSION} {version!r} is not SemVer")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", inputs):
        raise CannotCheck(f"{CHART_DIR}/Chart.yaml: {RELEASED_APP_INPUTS} {inputs!r} is not sha256:<64 hex digits>")
    return version, inputs


def record_release(chart_text: str, app_version: str, digest: str) -> str:
    """Chart.yaml with the two annotations set to this release (added under `annotations:` when missing)."""
    for key, value in ((RELEASED_APP_VERSION, f'"{app_version}"'), (RELEASED_APP_INPUTS, digest)):
        line = re.compile(rf"^(\s+){re.escape(key)}:.*$", re.M)
        if line.search(chart_text):
            chart_text = line.sub(lambda m: f"{m.group(1)}{key}: {value}", chart_text, count=1)
        elif re.search(r"^annotations:[ \t]*$", chart_text, re.M):
            chart_text = re.sub(r"^annotations:[ \t]*$", lambda m: f"annotations:\n  {key}: {value}", chart_text,
                                count=1, flags=re.M)  # fmt: skip
        else:
            chart_text = chart_text.rstrip("\n") + f"\nannotations:\n  {key}: {value}\n"
    return chart_text


def listing(files: list[str]) -> str:
    return ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def check(repo: Path, expect_tag: str | None = None) -> list[str]:
    """Broken rules as messages (empty: all kept); prints what was checked."""
    chart_file = repo / CHART_DIR / "Chart.yaml"
    if not chart_file.is_file():
        raise CannotCheck(f"no {CHART_DIR}/Chart.yaml in {repo}")
    chart_text = chart_file.read_text()
    version, app_version = chart_versions(chart_text, f"{CHART_DIR}/Chart.yaml")
    released_app_version, released_inputs = released(chart_text)
    digest = app_inputs_digest(repo)
    errors = []
    if expect_tag is not None and expect_tag != f"{TAG_PREFIX}{version}":
        errors.append(f"tag {expect_tag} does not name the chart's version: Chart.yaml version is {version}, "
                      f"its release tag is {TAG_PREFIX}{version}")  # fmt: skip
    tag = last_release_tag(repo)
    if tag is None:
        # A shallow clone (CI's default checkout) has no tags in its history: say so rather than pass in silence.
        shallow = git(repo, "rev-parse", "--is-shallow-repository").strip() == "true"
        hint = " (a shallow clone: `git fetch --unshallow --tags` to check against the tags)" if shallow else ""
        print(f"version-check: no release tag yet ({TAG_PREFIX}<version>): nothing to compare "
              f"version {version} / appVersion {app_version} with{hint}")  # fmt: skip
    else:
        errors += tag_rules(repo, tag, version, app_version)
    errors += recorded_release_rules(app_version, released_app_version, released_inputs, digest, expect_tag)
    return errors


def recorded_release_rules(app_version: str, released_app_version: str, released_inputs: str, digest: str,
                           expect_tag: str | None) -> list[str]:  # fmt: skip
    """The rule against the release recorded in Chart.yaml: other inputs, a higher appVersion (one tag, one build)."""
    errors = []
    changed = digest != released_inputs
    if semver_key(app_version) < semver_key(released_app_version):
        errors.append(f"Chart.yaml appVersion is {app_version}, below the released {released_app_version} "
                      f"({RELEASED_APP_VERSION})")  # fmt: skip
    elif changed and semver_key(app_version) == semver_key(released_app_version):
        errors.append(f"the images' inputs ({INPUTS}) differ from those of the release of appVersion "
                      f"{released_app_version} ({RELEASED_APP_INPUTS} {released_inputs[:19]}..., now {digest[:19]}...) "
                      f"but Chart.yaml appVersion is {app_version}, not above {released_app_version}: bump appVersion "
                      "(the images' tag) and version")  # fmt: skip
    if expect_tag is not None and (released_app_version, released_inputs) != (app_version, digest):
        errors.append(f"the release {expect_tag} is not recorded: Chart.yaml's {RELEASED_APP_VERSION} is "
                      f"{released_app_version} (appVersion {app_version}) and {RELEASED_APP_INPUTS} "
                      f"{'differs from' if changed else 'matches'} the images' inputs: run ci/version_check.py "
                      "--record-release and commit")  # fmt: skip
    print(f"version-check: the images' inputs {'differ from' if changed else 'match'} those recorded for the release "
          f"of appVersion {released_app_version} (appVersion {app_version})")  # fmt: skip
    return errors


def tag_rules(repo: Path, tag: str, version: str, app_version: str) -> list[str]:
    """The rules against the last release tag: chart changes need `version` above it, input changes `appVersion`."""
    errors = []
    tag_version, tag_app_version = chart_versions(git(repo, "show", f"{tag}:{CHART_DIR}/Chart.yaml"),
                                                  f"{CHART_DIR}/Chart.yaml at {tag}")  # fmt: skip
    chart_changes = changed_since(repo, tag, (CHART_DIR,))
    if chart_changes and semver_key(version) <= semver_key(tag_version):
        errors.append(f"{CHART_DIR}/ changed since {tag} ({listing(chart_changes)}) but Chart.yaml version is "
                      f"{version}, not above {tag_version}: bump version ({BUMPS}) "
                      "and add its CHANGELOG.md section")  # fmt: skip
    app_changes = app_inputs_changed(repo, tag)
    if app_changes and semver_key(app_version) <= semver_key(tag_app_version):
        errors.append(f"the images' inputs changed since {tag} ({listing(app_changes)}) but Chart.yaml appVersion "
                      f"is {app_version}, not above {tag_app_version}: bump appVersion (the images' tag) "
                      "and version")  # fmt: skip
    print(f"version-check: since {tag}: {len(chart_changes)} chart files changed (version {tag_version} -> "
          f"{version}), {len(app_changes)} image inputs changed (appVersion {tag_app_version} -> {app_version})")  # fmt: skip
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--expect-tag", help="fail unless this is mlflow-stack-<Chart.yaml version>")
    parser.add_argument("--record-release", action="store_true",
                        help="record this appVersion and its images' inputs in Chart.yaml as the last release")
    args = parser.parse_args(argv)
    try:
        if args.record_release:
            return record(args.repo)
        errors = check(args.repo, args.expect_tag)
    except CannotCheck as e:
        print(f"version-check: cannot check: {e}", file=sys.stderr)
        return 2
    for e in errors:
        print(f"version-check: FAIL: {e}", file=sys.stderr)
    if not errors:
        print("version-check: ok")
    return 1 if errors else 0


def record(repo: Path) -> int:
    """--record-release: the rules first (a broken one is not recorded over), then the two annotations."""
    chart_file = repo / CHART_DIR / "Chart.yaml"
    if not chart_file.is_file():
        raise CannotCheck(f"no {CHART_DIR}/Chart.yaml in {repo}")
    chart_text = chart_file.read_text()
    try:
        errors = check(repo)
    except CannotCheck as e:
        if RELEASED_APP_VERSION not in str(e):
            raise
        errors = []  # nothing recorded yet: the first record
    for e in errors:
        print(f"version-check: FAIL: {e}", file=sys.stderr)
    if errors:
        print("version-check: not recorded: keep the rules first", file=sys.stderr)
        return 1
    _, app_version = chart_versions(chart_text, f"{CHART_DIR}/Chart.yaml")
    digest = app_inputs_digest(repo)
    chart_file.write_text(record_release(chart_text, app_version, digest))
    print(f"version-check: recorded the release of appVersion {app_version}: {RELEASED_APP_INPUTS} {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
