"""Every `helm install`/`upgrade`/`template` command of the docs renders as written; every request to the scoring
server sends its image from a file.

The commands are taken from the shell blocks of README.md, docs/*.md, the chart's README and NOTES.txt, and run by
a real bash (so quoting mistakes fail as they would for a user) in which `helm` is a function that turns
install/upgrade into `helm template` with the same flags. A release from `oci://` is rendered from the local chart.
The values files the docs define in their own yaml blocks (`# my-images.yaml`, `# sweep.yaml`, ...) are written next
to the command first. Every install and upgrade of the local chart must pass `-f my-images.yaml`, and what it renders
must run the images named there: an upgrade without it falls back to the chart's default images. The README's
command that turns serving on serves the model its training registers and promotes (the same values, merged).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import REPO
from test_chart_metadata import CHART, CHART_YAML, TOOLS, helm, images_in
from test_docs import SHELL_LANGS, split_blocks

NOTES = CHART / "templates" / "NOTES.txt"
IMAGES_FILE = "my-images.yaml"
VALUES_FILE = re.compile(r"^#\s*([\w.-]+\.ya?ml)\b")
HELM_RENDER = re.compile(r"^helm\s+(install|upgrade|template)\s")

# `helm`, as the commands see it: install/upgrade become template with the same flags (what only a cluster or a
# registry would do is dropped), a release from oci:// is the local chart, and a local install without the images
# file is refused.
HELM_SHIM = r"""
helm() {
  local verb=$1 args=() images=
  shift
  case $verb in install|upgrade|template) ;; *) echo "not a render: helm $verb" >&2; return 2 ;; esac
  while [ $# -gt 0 ]; do
    case $1 in
      --install|--create-namespace|--verify|--wait|--atomic) ;;
      --keyring) shift ;;
      --version) [ "$2" = "$CHART_VERSION" ] || { echo "--version $2 is not the chart's $CHART_VERSION" >&2; return 2; }; shift ;;
      oci://*/mlflow-stack) args+=("$CHART") ;;
      charts/mlflow-stack) args+=("$1"); [ "$verb" = template ] || images=missing ;;
      -f) args+=("$1" "$2"); [ "$2" != my-images.yaml ] || images=; shift ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  [ -z "$images" ] || { echo "an install/upgrade of the local chart without -f my-images.yaml" >&2; return 2; }
  command helm template "${args[@]}"
}
"""


def doc_pages() -> list[Path]:
    chart_readme = CHART / "README.md"
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), chart_readme]


def commands(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The commands of shell lines as (line number, command), continuation lines joined, comment lines dropped."""
    out: list[tuple[int, str]] = []
    pending = ""
    for number, line in lines:
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            out.append((start, pending))
            pending = ""
    return out


def shell_lines(page: Path) -> list[tuple[int, str]]:
    """(line number, line) of the page's shell blocks; NOTES.txt is all shell-like text."""
    lines = page.read_text().splitlines()
    if page.suffix != ".md":
        return list(enumerate(lines, 1))
    out: list[tuple[int, str]] = []
    lang = None
    for number, line in enumerate(lines, 1):
        fence = re.match(r"^\s*(`{3,}|~{3,})\s*([\w-]*)", line)
        if fence and lang is None:
            lang = fence.group(2).lower()
        elif fence:
            lang = None
        elif lang in SHELL_LANGS:
            out.append((number, line))
    return out


def doc_commands() -> list[tuple[str, str]]:
    """(page:line, command) of every helm command that renders a chart."""
    found = []
    for page in [*doc_pages(), NOTES]:
        for number, command in commands(shell_lines(page)):
            if HELM_RENDER.match(command):
                found.append((f"{page.relative_to(REPO)}:{number}", command))
    return found


def scoring_examples() -> list[tuple[str, str]]:
    """(page:line, script) of each documented request to the scoring server: the curl to /invocations, after the
    command before it when that one writes the request body. tests/model/test_model.py runs them."""
    found = []
    for page in [*doc_pages(), NOTES]:
        found_commands = commands(shell_lines(page))
        for i, (number, command) in enumerate(found_commands):
            if command.startswith("curl") and "/invocations" in command:
                script = [command]
                if i and "payload.json" in found_commands[i - 1][1]:
                    script.insert(0, found_commands[i - 1][1])
                found.append((f"{page.relative_to(REPO)}:{number}", "\n".join(script)))
    return found


def values_files() -> dict[str, str]:
    """The yaml blocks of the docs that name their file in their first line (`# sweep.yaml`)."""
    files: dict[str, str] = {}
    for page in doc_pages():
        for lang, block in split_blocks(page.read_text())[1]:
            if lang in ("yaml", "yml") and block and (m := VALUES_FILE.match(block[0])):
                assert m.group(1) not in files, f"{m.group(1)} is defined twice in the docs"
                files[m.group(1)] = "\n".join(block) + "\n"
    return files


COMMANDS = doc_commands()


def test_the_docs_have_helm_commands_and_the_images_file() -> None:
    pages = {where.split(":")[0] for where, _ in COMMANDS}
    assert {"README.md", "docs/chart.md", "docs/serving.md", "charts/mlflow-stack/README.md"} <= pages, pages
    images = yaml.safe_load(values_files()[IMAGES_FILE])
    assert images["server"]["image"]["repository"] and images["training"]["image"]["repository"]


def test_no_doc_uses_the_images_variable() -> None:
    """`$IMAGES` is empty in a new shell and one word in zsh; the values file replaced it."""
    for page in [*doc_pages(), NOTES, CHART / "README.md.gotmpl"]:
        assert "$IMAGES" not in page.read_text(), page


def test_scoring_examples_send_the_image_from_a_file() -> None:
    """Linux limits one argument to 128 KiB: `-d "...$(base64 photo.jpg)..."` fails for an ordinary photo."""
    examples = scoring_examples()
    pages = {where.split(":")[0] for where, _ in examples}
    assert {"README.md", "docs/serving.md", "docs/model.md", "charts/mlflow-stack/templates/NOTES.txt"} <= pages
    for where, script in examples:
        assert "$(" not in script and "-d @payload.json" in script and "{{" not in script, f"{where}: {script}"


@pytest.mark.parametrize("where,command", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_doc_helm_command_renders(where: str, command: str, tmp_path: Path) -> None:
    for name, text in values_files().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "charts").symlink_to(REPO / "charts")
    env = {"PATH": f"{TOOLS}:/usr/bin:/bin", "CHART": str(CHART), "CHART_VERSION": str(CHART_YAML["version"]),
           **{f"HELM_{k}_HOME": str(tmp_path / "helm" / k.lower()) for k in ("CONFIG", "CACHE", "DATA")}}
    result = subprocess.run(["bash", "-c", HELM_SHIM + command], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, f"{where}: {command}\n{result.stderr}"
    if re.search(r"(^|\s)charts/mlflow-stack(\s|$)", command) and not command.startswith("helm template"):
        ours = yaml.safe_load(values_files()[IMAGES_FILE])
        wanted = (ours["server"]["image"]["repository"], ours["training"]["image"]["repository"])
        built = [i for i in images_in(result.stdout) if re.search(r"/mlflow-stack-(server|trainer)[:@]", i)]
        assert built and all(i.startswith(wanted) for i in built), f"{where}: images {built}, not {wanted}"


def helm_values(command: str, files: dict[str, dict]) -> dict:
    """The values a README `helm install`/`upgrade` gives the chart: its `-f` files (the README's own) in order, then
    its `--set`s, merged key by key over the chart's defaults."""
    def merge(into: dict, more: dict) -> dict:
        for key, value in more.items():
            into[key] = merge(dict(into.get(key) or {}), value) if isinstance(value, dict) else value
        return into

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    words = command.split()
    for flag, arg in zip(words, words[1:]):
        if flag in ("-f", "--values"):
            values = merge(values, files.get(arg, {}))
        elif flag == "--set":
            for assignment in arg.split(","):
                path, value = assignment.split("=", 1)
                *parents, leaf = path.split(".")
                nested: dict = {leaf: yaml.safe_load(value)}
                for parent in reversed(parents):
                    nested = {parent: nested}
                values = merge(values, nested)
    return values


def test_readme_serves_the_model_its_training_registers_and_promotes() -> None:
    """One cluster story (issue 33): the README's command that turns serving on keeps a training that registers the
    served model and moves the served alias, and every `serving.model` the README names is that model."""
    readme = REPO / "README.md"
    files = {name: yaml.safe_load(text) or {} for name, text in values_files().items()}
    serving = [(c, v) for _, c in commands(shell_lines(readme))
               if re.match(r"helm\s+(install|upgrade)\s", c) and (v := helm_values(c, files))["serving"]["enabled"]]
    assert serving, "no helm command of README.md turns serving on (serving.enabled)"
    for command, values in serving:
        model, alias = values["serving"]["model"], values["serving"]["alias"]
        training = values["training"]
        runs = [training["params"]] + [{**training["params"], **(v or {}).get("params", {})}
                                       for v in (training.get("variants") or {}).values()]  # fmt: skip
        assert model, f"{command}: serving.model is empty"
        assert all(p.get("registerModel") == model for p in runs), f"{command}: serves {model!r}, trains {runs}"
        assert all(p.get("promoteAlias") == alias for p in runs), f"{command}: serves @{alias}, promotes {runs}"
        named = re.findall(r"serving\.model[=:]\s*`?([\w.-]+)", readme.read_text())
        assert set(named) <= {model}, f"README.md names serving.model {named}, its serving command serves {model}"


SECRET_READ = re.compile(r"kubectl -n (\S+) get secret ([\w.-]+) -o jsonpath='\{\.data\.([\w.-]+)\}'")
PORT_FORWARD = re.compile(r"kubectl -n (\S+) port-forward svc/([\w.-]+) (\d+)(?::(\d+))?")


def test_doc_secret_reads_and_port_forwards_name_what_the_chart_creates(tmp_path: Path) -> None:
    """Every `kubectl get secret NAME -o jsonpath='{.data.KEY}'` and `kubectl port-forward svc/NAME PORT` of the docs
    (the admin password and the UI without NOTES, issue 33) names a Secret key and a Service port of release `mlflow`
    in namespace `mlflow` as the chart renders them; a generated Secret counts by the credentials hook's list of the
    Secrets it creates (names and keys, never values)."""
    docs = [d for d in yaml.safe_load_all(helm(tmp_path, "template", "mlflow", str(CHART), "-n", "mlflow",
                                               "--set", "serving.enabled=true", "--set", "serving.model=m")) if d]
    keys = {(d["metadata"]["name"], k) for d in docs if d["kind"] == "Secret"
            for k in {**d.get("data", {}), **d.get("stringData", {})}}  # fmt: skip
    for d in docs:
        if d["kind"] == "Job" and d["metadata"]["name"] == "mlflow-mlflow-stack-credentials":
            env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
            keys |= {(s["name"], k) for s in yaml.safe_load(env["SECRETS"]) for k in s["keys"]}
    ports = {(d["metadata"]["name"], str(p["port"])) for d in docs if d["kind"] == "Service" for p in d["spec"]["ports"]}
    seen = []
    for page in doc_pages():
        for number, command in commands(shell_lines(page)):
            where = f"{page.relative_to(REPO)}:{number}"
            for ns, name, key in SECRET_READ.findall(command):
                seen.append(where)
                assert ns == "mlflow" and (name, key) in keys, f"{where}: no key {key} in a Secret {name}: {command}"
            for ns, name, local, remote in PORT_FORWARD.findall(command):
                if "<" in name:
                    continue
                seen.append(where)
                assert ns == "mlflow" and (name, remote or local) in ports, f"{where}: no Service {name} port: {command}"
    assert any(w.startswith("README.md") for w in seen), "README.md reads no Secret and forwards no port"
