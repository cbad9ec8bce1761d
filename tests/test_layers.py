"""The trainer's layers (ARCHITECTURE.md) hold: `cli` -> capabilities (training/, distributed/, model/, serving/) ->
the shared base (the other top-level modules of src/trainer), with no import circle among modules nor among
capabilities, and the pyfunc model file importing nothing from `trainer` (MLflow copies it into every logged model,
which must load where `trainer` is not installed).

Imports are read with `ast`, never executed: those inside functions and under `if TYPE_CHECKING:` count too (a lazy
import is still a dependency). `test_checker_reports_each_kind_of_breach` runs the checker on a tiny broken tree: that
is the proof it can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "trainer"
MODEL_FILE = "trainer.model.detector_model"  # copied into the logged model: imports nothing from trainer


def modules(src: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__.py)."""
    found = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules `name` imports, wherever the import statement sits."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package upwards
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:  # `from trainer.model import predict` imports the module trainer.model.predict
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m != name}


def layers(known: dict[str, Path]) -> dict[str, str]:
    """Each module's layer: a subpackage of the package is a capability."""
    capabilities = {m.split(".")[1] for m, p in known.items() if m.count(".") == 1 and p.name == "__init__.py"}
    result = {}
    for m in known:
        parts = m.split(".")
        if parts[1:] == ["cli"]:
            result[m] = "cli"
        elif len(parts) > 1 and parts[1] in capabilities:
            result[m] = parts[1]
        else:
            result[m] = "base"
    return result


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph (its nodes in order, the first repeated at the end), else None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def breaches(src: Path) -> list[str]:
    """Every rule the package's imports break, as readable lines (empty when the layers hold)."""
    known = modules(src)
    graph = {m: imports(m, p, known) for m, p in known.items()}
    where = layers(known)
    problems = []
    if found := cycle(graph):
        problems.append("import circle: " + " -> ".join(found))
    capability_graph: dict[str, set[str]] = {}
    for m, targets in graph.items():
        for t in targets:
            if t not in where:
                continue
            a, b = where[m], where[t]
            if a == "base" and b != "base":
                problems.append(f"the shared base imports a higher layer: {m} -> {t}")
            elif a not in ("base", "cli") and b == "cli":
                problems.append(f"a capability imports cli: {m} -> {t}")
            elif a not in ("base", "cli") and b not in ("base", "cli", a):
                capability_graph.setdefault(a, set()).add(b)
    if found := cycle(capability_graph):
        problems.append("capability circle: " + " -> ".join(found))
    if MODEL_FILE in graph:
        problems += [f"{MODEL_FILE} imports {t}: the logged model must load without trainer"
                     for t in sorted(graph[MODEL_FILE])]
    return problems


def test_trainer_layers_hold() -> None:
    known = modules(SRC)
    assert MODEL_FILE in known, "the pyfunc model file moved: update MODEL_FILE and ARCHITECTURE.md"
    assert {"training", "distributed", "model", "serving"} <= set(layers(known).values())
    assert breaches(SRC) == []


def test_checker_reports_each_kind_of_breach(tmp_path: Path) -> None:
    def write(rel: str, text: str = "") -> None:
        path = tmp_path / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    for package in ("", "training/", "distributed/", "model/"):
        write(package + "__init__.py")
    write("cli.py", "from trainer.training import runner\n")
    write("config.py", "def f():\n    from trainer.model import publishing\n")  # base -> capability
    write("training/runner.py", "from trainer.distributed import launch\n")
    write("distributed/launch.py", "from ..training import runner\n")  # a module circle, relative
    write("distributed/check.py", "from trainer import cli\n")  # capability -> cli
    write("model/publishing.py", "from trainer import config\n")
    write("model/detector_model.py", "import trainer.config\n")
    found = "\n".join(breaches(tmp_path))
    assert "import circle: trainer.training.runner -> trainer.distributed.launch -> trainer.training.runner" in found
    assert "capability circle: distributed -> training -> distributed" in found
    assert "the shared base imports a higher layer: trainer.config -> trainer.model.publishing" in found
    assert "a capability imports cli: trainer.distributed.check -> trainer.cli" in found
    assert "trainer.model.detector_model imports trainer.config" in found
