"""The documentation cannot rot: README.md, CHANGELOG.md and docs/*.md are checked without any network.

- every relative link and image resolves to a file of the repository, and its `#anchor` to a heading of that file
  (GitHub's slug rule); absolute http(s) links are not fetched, only checked to be well formed;
- every shell code block names only `make` targets of the Makefile and `ci/...` / `bench/...` paths that exist;
- README.md stays short and links every docs/ page (the reference lives there);
- every repository path ARCHITECTURE.md names (a code span starting at a top-level folder) exists.

The checkers take the repository root, so `test_checkers_report_each_kind_of_rot` runs them on a tiny broken tree:
that is the proof they can fail.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 180

FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w-]*)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
# [text](target) and ![alt](target), with an optional "title"; the text may hold one level of brackets (an image).
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+(\S+)")
CODE_SPAN = re.compile(r"(`+).+?\1")
SHELL_LANGS = {"bash", "sh", "shell", "console"}
# A block without a language counts as shell when a line starts with one of these commands.
SHELL_WORDS = re.compile(r"^\s*(\$\s+)?(make|helm|kubectl|git|docker|curl|mlflow|trainer|bash|cosign|python3?|"
                         r"\./|ci/|bench/)")
SCRIPT = re.compile(r"(?<![\w./-])(?:\./)?((?:ci|bench)/[\w./-]*[\w/])")
# A repository path in a code span of ARCHITECTURE.md: from a top-level folder (the table's relative names are not).
REPO_PATH = re.compile(r"`((?:charts|src|tests|ci|images|bench|docs)/[\w./<>-]*)`")


def doc_files(root: Path) -> list[Path]:
    """The pages whose links are checked."""
    pages = [root / "README.md", root / "ARCHITECTURE.md", root / "CHANGELOG.md", *sorted((root / "docs").glob("*.md"))]
    return [p for p in pages if p.exists()]


def split_blocks(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The lines outside fenced code blocks, and each fenced block as (language, lines)."""
    prose: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    fence = ""
    for line in text.splitlines():
        m = FENCE.match(line)
        if not fence and m:
            fence = m.group(1)
            blocks.append((m.group(2).lower(), []))
        elif fence and line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            fence = ""
        elif fence:
            blocks[-1][1].append(line)
        else:
            prose.append(line)
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lowercase, punctuation but `-`/`_` stripped, spaces to `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a Markdown page; a repeated slug gets `-1`, `-2`, ... as on GitHub."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in split_blocks(page.read_text())[0]:
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    """The link and image targets of a page, outside code blocks and code spans (a link's text may span lines)."""
    prose = [CODE_SPAN.sub("", line) for line in split_blocks(page.read_text())[0]]
    return LINK.findall("\n".join(prose)) + [m for line in prose for m in REFERENCE.findall(line)]


def link_problems(root: Path) -> list[str]:
    """One line per link that does not resolve: missing file, unknown anchor, malformed URL."""
    problems: list[str] = []
    for page in doc_files(root):
        name = page.relative_to(root)
        for target in links(page):
            parts = urlsplit(target)
            if parts.scheme in ("http", "https"):
                if not re.fullmatch(r"[\w.-]+\.[a-z]{2,}(:\d+)?", parts.netloc) or " " in target:
                    problems.append(f"{name}: malformed URL {target}")
                continue
            if parts.scheme or target.startswith("//"):
                problems.append(f"{name}: unexpected link scheme {target}")
                continue
            path = (page.parent / parts.path).resolve() if parts.path else page
            if not path.exists():
                problems.append(f"{name}: {target}: no such file")
            elif parts.fragment and path.suffix != ".md":
                problems.append(f"{name}: {target}: an anchor into a file that is not Markdown")
            elif parts.fragment and parts.fragment not in anchors(path):
                problems.append(f"{name}: {target}: no heading with anchor #{parts.fragment} in {path.name}")
    return problems


def make_targets(root: Path) -> set[str]:
    """Targets of the Makefile: `target:` lines and the names in .PHONY."""
    targets: set[str] = set()
    for line in (root / "Makefile").read_text().splitlines():
        if line.startswith(".PHONY:"):
            targets.update(line.split(":", 1)[1].split())
        elif m := re.match(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", line):
            targets.add(m.group(1))
    return targets


def shell_lines(page: Path) -> list[str]:
    """The lines of the page's shell code blocks, comments dropped."""
    lines: list[str] = []
    for lang, block in split_blocks(page.read_text())[1]:
        if lang in SHELL_LANGS or (not lang and any(SHELL_WORDS.match(line) for line in block)):
            lines += [re.sub(r"(^|\s)#.*", "", line) for line in block]
    return lines


def command_problems(root: Path) -> list[str]:
    """One line per `make` target or ci/ / bench/ path in a shell block that does not exist."""
    targets = make_targets(root)
    problems: list[str] = []
    for page in doc_files(root):
        name = page.relative_to(root)
        for line in shell_lines(page):
            # `make` at the start of a command: its arguments up to the next shell operator, without VAR=value/flags.
            for args in re.findall(r"(?:^|[;&|(]|\$\()\s*(?:\$\s+)?make((?:\s+[^\s;&|)]+)*)", line):
                for word in args.split():
                    if "=" not in word and not word.startswith("-") and word not in targets:
                        problems.append(f"{name}: `make {word}`: no such target in the Makefile")
            for script in SCRIPT.findall(line):
                if not (root / script).exists():
                    problems.append(f"{name}: {script}: no such file")
    return problems


def unlinked_docs(root: Path) -> list[str]:
    """The docs/ pages that README.md does not link to."""
    readme = root / "README.md"
    linked = {(readme.parent / urlsplit(t).path).resolve() for t in links(readme) if not urlsplit(t).scheme}
    return [p.name for p in sorted((root / "docs").glob("*.md")) if p.resolve() not in linked]


def architecture_problems(root: Path) -> list[str]:
    """One line per repository path ARCHITECTURE.md names that does not exist (a `<placeholder>` part is skipped)."""
    page = root / "ARCHITECTURE.md"
    if not page.exists():
        return ["ARCHITECTURE.md: no such file"]
    named = {m for line in page.read_text().splitlines() for m in REPO_PATH.findall(line) if "<" not in m}
    return [f"ARCHITECTURE.md: {p}: no such file" for p in sorted(named) if not (root / p).exists()]


def test_links_and_anchors_resolve() -> None:
    assert link_problems(ROOT) == []


def test_code_blocks_name_existing_commands() -> None:
    assert command_problems(ROOT) == []


def test_readme_is_short_and_links_every_docs_page() -> None:
    readme = ROOT / "README.md"
    lines = len(readme.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference text to docs/"
    assert unlinked_docs(ROOT) == [], "docs pages README.md does not link"


def test_architecture_names_existing_paths(tmp_path: Path) -> None:
    named = architecture_problems(ROOT)
    assert named == [], "ARCHITECTURE.md names paths that do not exist (moved? update it)"
    (tmp_path / "src" / "trainer").mkdir(parents=True)
    (tmp_path / "src" / "trainer" / "cli.py").write_text("")
    page = "`src/trainer/cli.py` `src/trainer/gone.py` `src/trainer/<new>/` `cli.py`\n"  # the last is relative
    (tmp_path / "ARCHITECTURE.md").write_text(page)
    assert architecture_problems(tmp_path) == ["ARCHITECTURE.md: src/trainer/gone.py: no such file"]
    assert architecture_problems(tmp_path / "src") == ["ARCHITECTURE.md: no such file"]


def test_slug_rule() -> None:
    assert slug("What a run records in MLflow") == "what-a-run-records-in-mlflow"
    assert slug("Sweeps: several variants, compared in the UI") == "sweeps-several-variants-compared-in-the-ui"
    assert slug("`helm test` against real S3") == "helm-test-against-real-s3"
    assert slug("What `make setup` installs") == "what-make-setup-installs"
    assert slug("Where a dataset's files are") == "where-a-datasets-files-are"


def test_checkers_report_each_kind_of_rot(tmp_path: Path) -> None:
    """A tiny repository with one of each fault, and the same things done right: only the faults are reported."""
    (tmp_path / "Makefile").write_text(".PHONY: demo test\ndemo:\n\t@true\nbench: demo\n")
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "node").write_text("")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "shot.png").write_bytes(b"")
    (tmp_path / "docs" / "guide.md").write_text(
        "# Guide\n\n## Setup\n\n## Setup\n\nBack to [the README](../README.md#two-commands).\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Not linked from the README\n")
    (tmp_path / "README.md").write_text(
        "# Demo\n\n## Two commands\n\n![shot](docs/shot.png) [guide](docs/guide.md#setup-1) [up](#two-commands)\n"
        "[gone](docs/gone.md) [bad anchor](docs/guide.md#install) ![lost](docs/lost.png) [web](https://example.com/a)\n"
        "[typo](https:/example.com) `[in code](docs/nowhere.md)` [a link over\ntwo lines](docs/gone-too.md)\n\n"
        "```console\nmake demo KEEP_SERVER=1 && make bench   # make nothing\nci/node up; bash ci/cluster up\n```\n\n"
        "```bash\nmake deploy PUSH=1\nbench/run.sh\n```\n\n"
        "```python\nos.system('make nothing')\n```\n\n"
        "```\nmake tset\n```\n")
    assert sorted(link_problems(tmp_path)) == sorted([
        "README.md: docs/gone.md: no such file",
        "README.md: docs/gone-too.md: no such file",
        "README.md: docs/guide.md#install: no heading with anchor #install in guide.md",
        "README.md: docs/lost.png: no such file",
        "README.md: malformed URL https:/example.com",
    ])
    assert sorted(command_problems(tmp_path)) == sorted([
        "README.md: ci/cluster: no such file",
        "README.md: `make deploy`: no such target in the Makefile",
        "README.md: bench/run.sh: no such file",
        "README.md: `make tset`: no such target in the Makefile",
    ])
    assert unlinked_docs(tmp_path) == ["orphan.md"]


def test_trainer_doc_names_every_param_and_tag_a_run_gets(tmp_path: Path) -> None:
    """docs/trainer.md's table of what a run records names each param (but the `hyp/*` ones) and each tag the trainer
    sets, distributed ones included."""
    from trainer.cli import build_parser
    from trainer.config import resolve
    from trainer.training.runner import ENV_TAGS, run_params, run_tags

    args = build_parser().parse_args(["train", "--nproc-per-node", "2", "--sweep", "s", "--variant", "v"])
    config = resolve(args, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"})
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("lr0: 0.01\n")
    table = (ROOT / "docs" / "trainer.md").read_text().split("## What a run records in MLflow")[1].split("\n## ")[0]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    params = [k for k in run_params(config, "cpu", hyp) if not k.startswith("hyp/")]
    tags = run_tags(config, {var: "x" for var in ENV_TAGS})
    assert [k for k in params if f"`{k}`" not in rows["params (logged once, before training)"]] == []
    assert [k for k in tags if f"`{k}`" not in rows["tags"]] == []


def test_release_tag_example_names_the_charts_version() -> None:
    """docs/releasing.md's tag is the one the release workflow accepts (`ci/version_check.py --expect-tag`)."""
    import yaml

    [block] = [b for lang, b in split_blocks((ROOT / "docs" / "releasing.md").read_text())[1] if "git tag" in "".join(b)]
    before_tag = "\n".join(line for line in block if not line.startswith("git "))
    tag = subprocess.run(["bash", "-c", before_tag + '\necho "$tag"'], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    version = yaml.safe_load((ROOT / "charts" / "mlflow-stack" / "Chart.yaml").read_text())["version"]
    assert tag == f"mlflow-stack-{version}"
    assert 'git tag "$tag" && git push origin "$tag"' in block
