#!/usr/bin/env python3
"""The chart's version rules against the last release tag: the version check of helm/chart-testing's `ct lint`, small
and our own (chart-testing is not served by the Go module proxy CI can reach). Rules: docs/releasing.md.

Usage: ci/version_check.py [--repo DIR] [--expect-tag TAG]

  The last release tag is the highest mlflow-stack-<SemVer> tag (chart-releaser's naming) in HEAD's history; on a
  tagged release commit with nothing changed since, the one before it (so a tag push checks its own bumps). Since it:
  - anything under charts/mlflow-stack/ changed (the working tree counts, untracked files too)
      -> Chart.yaml `version` must be above the tag's
  - anything under images/ or src/ changed, or pyproject.toml outside its dev extra and [tool.*] (what the two images
    install; the CUDA trainer too)
      -> Chart.yaml `appVersion` must be above the tag's (and since that edits Chart.yaml, `version` too)
  No such tag yet: says so and passes.
  --expect-tag TAG also fails unless TAG is mlflow-stack-<version> (the release workflow passes the tag it runs for).

Exit status: 0 rules kept, 1 a rule broken (the message names the field and the tag), 2 cannot check.
"""

from __future__ import annotations

import argparse
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


def listing(files: list[str]) -> str:
    return ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def check(repo: Path, expect_tag: str | None = None) -> list[str]:
    """Broken rules as messages (empty: all kept); prints what was checked."""
    chart_file = repo / CHART_DIR / "Chart.yaml"
    if not chart_file.is_file():
        raise CannotCheck(f"no {CHART_DIR}/Chart.yaml in {repo}")
    version, app_version = chart_versions(chart_file.read_text(), f"{CHART_DIR}/Chart.yaml")
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
        return errors
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
    args = parser.parse_args(argv)
    try:
        errors = check(args.repo, args.expect_tag)
    except CannotCheck as e:
        print(f"version-check: cannot check: {e}", file=sys.stderr)
        return 2
    for e in errors:
        print(f"version-check: FAIL: {e}", file=sys.stderr)
    if not errors:
        print("version-check: ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
