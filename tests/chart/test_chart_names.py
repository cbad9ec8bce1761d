"""Every name the chart renders fits Kubernetes' limits for the longest release name and fullnameOverride Helm accepts.

Helm allows release names of up to 53 characters and the schema a `fullnameOverride` of up to 63; each resource's
`metadata.name` must stay a DNS label (at most 63 characters), and a StatefulSet's or CronJob's at most 52 (their pods
or Jobs get the name plus 11 characters in a label). Checked over the chart defaults, values-cpu/values-gpu.yaml,
every ci/*-values.yaml scenario, one set that switches every optional resource on and a scheduled sweep (CronJobs),
rendered by `helm template`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from test_chart_metadata import CHART, helm

RELEASE_53 = "r" * 40 + "-release-name"  # the longest release name Helm accepts (53)
FULLNAME_63 = "f" * 50 + "-fullname-xyz"  # the longest fullnameOverride the schema accepts (63)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LIMIT_52 = {"StatefulSet", "CronJob"}

# Every optional resource at once: bundled PostgreSQL, auth, metrics + ServiceMonitor, NetworkPolicies, Ingress, HPA,
# a Service named after the release, and a sweep whose variant name has the longest length allowed (20).
EVERYTHING = [
    "--set", "backend.type=postgresql", "--set", "server.auth.enabled=true", "--set", "server.metrics.enabled=true",
    "--set", "server.metrics.serviceMonitor.enabled=true", "--set", "networkPolicy.enabled=true",
    "--set", "networkPolicy.serverFrom[0].namespaceSelector.matchLabels.name=ingress", "--set", "ingress.enabled=true",
    "--set", "server.autoscaling.enabled=true", "--set", "server.service.name=",
    "--set", "training.variants.a-twenty-char-varian.params.epochs=1", "--set", "training.variants.b.params.epochs=2",
]  # fmt: skip

SCENARIOS = {
    "defaults": [],
    "values-cpu": ["-f", str(CHART / "values-cpu.yaml")],
    "values-gpu": ["-f", str(CHART / "values-gpu.yaml")],
    "everything": EVERYTHING,
    # scheduled training: one CronJob per variant (at most 52 characters)
    "scheduled": ["--set", "training.schedule=@daily", "--set", "training.variants.a-twenty-char-varian.params.epochs=1"],
    **{f.stem: ["-f", str(f)] for f in sorted((CHART / "ci").glob("*-values.yaml"))},
}


def rendered_names(tmp_path: Path, release: str, args: list[str]) -> list[tuple[str, str]]:
    out = helm(tmp_path, "template", release, str(CHART), "-n", "ml", *args)
    return [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("naming", ["release-53", "fullnameOverride-63"])
def test_every_rendered_name_fits_kubernetes_limits(tmp_path: Path, scenario: str, naming: str) -> None:
    override = ["--set", f"fullnameOverride={FULLNAME_63}"] if naming == "fullnameOverride-63" else []
    args = SCENARIOS[scenario] + override
    names = rendered_names(tmp_path, RELEASE_53, args)
    assert len(RELEASE_53) == 53 and len(FULLNAME_63) == 63
    assert any(kind == "Job" for kind, _ in names), "no Job rendered: the training Job must be part of the check"
    too_long = [f"{kind} {name} ({len(name)})" for kind, name in names
                if len(name) > (52 if kind in LIMIT_52 else 63) or not DNS_LABEL.match(name)]  # fmt: skip
    assert not too_long, f"names past Kubernetes' limits (StatefulSet/CronJob 52, others 63): {too_long}"
    assert len(set(names)) == len(names), f"two resources of one kind got the same name: {sorted(names)}"
    # an Indexed Job's pods are named (and resolve as) <job>-<index>: that host name is a DNS label too
    out = helm(tmp_path, "template", RELEASE_53, str(CHART), "-n", "ml", *args)
    hosts = [f"{d['metadata']['name']}-{d['spec']['completions'] - 1}" for d in yaml.safe_load_all(out)
             if d and d["kind"] == "Job" and d["spec"].get("completionMode") == "Indexed"]  # fmt: skip
    assert all(len(h) <= 63 for h in hosts), f"Indexed Job pod host names past 63: {hosts}"
