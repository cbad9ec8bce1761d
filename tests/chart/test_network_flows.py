"""The chart's NetworkPolicies admit every connection its pods need and refuse the ones they must not get, as an
enforcing CNI applies them (netpol.py), in the defaults' render and each `charts/mlflow-stack/ci/*-values.yaml`'s; and
docs/chart.md's table of flows is the one these renders give (network_flows.py).

The renders happen at collection (each once, in parallel): every flow is its own test, named by scenario and flow.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness import REPO
from netpol import Cluster
from network_flows import COMPONENT, NAMES, NAMESPACE, Flow, merged_values, needed, refused, table
from test_chart_metadata import CHART, TOOLS

RELEASE = "t"
FULLNAME = f"{RELEASE}-mlflow-stack"
SCENARIOS = {"defaults": None,
             **{p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))}}
DOCS = REPO / "docs" / "chart.md"
TABLE_HEADING = "### The flows the NetworkPolicies admit"


@dataclass(frozen=True, eq=False)
class Render:
    cluster: Cluster
    needed: list[Flow]
    refused: list[Flow]


def render(values_file: Path | None) -> Render:
    exe = TOOLS / "helm"
    assert os.access(exe, os.X_OK), f"{exe} is missing: run `make setup`"
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, **{f"HELM_{k}_HOME": f"{home}/{k.lower()}" for k in ("CONFIG", "CACHE", "DATA")}}
        args = [str(exe), "template", RELEASE, str(CHART), "-n", NAMESPACE]
        args += ["-f", str(values_file)] if values_file else []
        out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{' '.join(args)}: {out.stderr}"
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    values = merged_values(yaml.safe_load((CHART / "values.yaml").read_text()),
                           yaml.safe_load(values_file.read_text()) if values_file else {})  # fmt: skip
    cluster = Cluster.from_manifests(out.stdout, NAMESPACE)
    return Render(cluster, needed(cluster, values, docs), refused(cluster, values))


@functools.cache
def renders() -> dict[str, Render]:
    with ThreadPoolExecutor(max_workers=4) as pool:  # helm is a process of its own: threads overlap the renders
        return dict(zip(SCENARIOS, pool.map(render, SCENARIOS.values())))


def flow_params(kind: str) -> list:
    return [pytest.param(name, flow, id=f"{name}: {flow.id}")
            for name, r in renders().items() for flow in getattr(r, kind)]  # fmt: skip


def explain(r: Render, flow: Flow) -> str:
    return "; ".join(f"{s!r}: {r.cluster.verdict(s, flow.target, flow.port, flow.proto)}" for s in flow.sources)


@pytest.mark.parametrize("scenario,flow", flow_params("needed"))
def test_needed_flow_is_admitted(scenario: str, flow: Flow) -> None:
    r = renders()[scenario]
    denied = [s for s in flow.sources if not r.cluster.allowed(s, flow.target, flow.port, flow.proto)]
    assert not denied, f"{scenario}: {flow.id} is refused ({explain(r, flow)})"


@pytest.mark.parametrize("scenario,flow", flow_params("refused"))
def test_refused_flow_is_refused(scenario: str, flow: Flow) -> None:
    r = renders()[scenario]
    admitted = [s for s in flow.sources if r.cluster.allowed(s, flow.target, flow.port, flow.proto)]
    assert not admitted, f"{scenario}: {flow.id} is admitted ({explain(r, flow)})"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_component_has_a_name(scenario: str) -> None:
    """A new component of the chart's pods needs its flows in network_flows.py (and a name in its table)."""
    components = {p.labels.get(COMPONENT) for p in renders()[scenario].cluster.pods}
    assert components <= set(NAMES), f"{scenario}: components without flows: {sorted(components - set(NAMES))}"


def docs_table() -> list[str]:
    lines = DOCS.read_text().splitlines()
    assert TABLE_HEADING in lines, f"docs/chart.md has no '{TABLE_HEADING}' section"
    start = next(i for i in range(lines.index(TABLE_HEADING), len(lines)) if lines[i].startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_docs_table_is_the_renders_table() -> None:
    generated = table(((r.cluster, r.needed) for r in renders().values()), FULLNAME)
    assert docs_table() == generated, "docs/chart.md's table of flows differs from the renders'; it should read:\n" + \
        "\n".join(generated)  # fmt: skip
    assert not any("| no policy |" in row for row in generated), "a needed flow no policy names"
