"""`helm upgrade` starts a new training only for values that change the training (issue 19 item 4).

The training Job's name ends in a hash of its spec, and a Job's pod template is immutable: an upgrade whose Job keeps
its name must render the very same spec (or the API server refuses it: "field is immutable"), and one that changes
the training must rename it (Helm then replaces the Job). Each connection setting below, alone over the defaults (and
over a sweep), must leave every training Job exactly as it was while still reaching the pods, through the ConfigMap
`<fullname>-training` or the chart's ServiceAccount; each training value must rename the Job. Rendered with
`helm template` from values files (`-f`), as a user upgrades.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import yaml
from test_chart_metadata import CHART, helm

Docs = list[dict]
SWEEP = {"training": {"variants": {"sgd": {}, "adam": {"params": {"optimizer": "Adam"}}}}}


def render(tmp_path: Path, values: dict, chart: Path = CHART) -> Docs:
    path = tmp_path / f"values-{len(list(tmp_path.glob('values-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return [d for d in yaml.safe_load_all(helm(tmp_path, "template", "t", str(chart), "-n", "ml", "-f", str(path))) if d]


def merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def jobs(docs: Docs) -> dict[str, dict]:
    """Training Jobs by variant ("" for the single Job)."""
    return {(d["metadata"]["labels"].get("mlflow-stack/variant") or ""): d for d in docs
            if d["kind"] == "Job" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "training"}  # fmt: skip


def one(docs: Docs, kind: str, suffix: str) -> dict:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    return doc


def connection(docs: Docs) -> dict[str, str]:
    return one(docs, "ConfigMap", "-training")["data"]


# connection setting -> (values, what a pod started after the upgrade gets: checked on the render)
CONNECTION: dict[str, tuple[dict, Callable[[Docs], bool]]] = {
    "server.auth.enabled": ({"server": {"auth": {"enabled": False}}},  # on by default: turned off
                            lambda d: "MLFLOW_TRACKING_USERNAME" not in connection(d)),
    "server.service.port": ({"server": {"service": {"port": 80}}},
                            lambda d: connection(d)["MLFLOW_TRACKING_URI"].endswith(".svc.cluster.local:80")),
    "server.staticPrefix": ({"server": {"staticPrefix": "/mlflow"}},
                            lambda d: connection(d)["MLFLOW_TRACKING_URI"].endswith(":5000/mlflow")),
    "imagePullSecrets": ({"imagePullSecrets": [{"name": "regcred"}]},
                         lambda d: one(d, "ServiceAccount", "t-mlflow-stack").get("imagePullSecrets") == [{"name": "regcred"}]),
    "server.service.name": ({"server": {"service": {"name": "tracking"}}},
                            lambda d: connection(d)["MLFLOW_TRACKING_URI"].startswith("http://tracking.ml.")),
    "server.auth.clientUsername": ({"server": {"auth": {"enabled": True, "clientUsername": "robot"}}},
                                   lambda d: connection(d).get("MLFLOW_TRACKING_USERNAME") == "robot"),
    "training.trackingUri": ({"training": {"trackingUri": "https://mlflow.example.com"}},
                             lambda d: connection(d)["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"),
}  # fmt: skip

# training value -> values: each must start a new training
TRAINING: dict[str, dict] = {
    "training.params.epochs": {"training": {"params": {"epochs": 30}}},
    "training.params.seed": {"training": {"params": {"seed": 20240101}}},
    "training.params.promoteAlias": {"training": {"params": {"registerModel": "det", "promoteAlias": "champion"}}},
    "training.image.tag": {"training": {"image": {"tag": "0.1.1"}}},
    "training.dataset.synthetic": {"training": {"dataset": {"synthetic": True}}},
    "training.dataset.existingClaim": {"training": {"dataset": {"existingClaim": "datasets"}}},
    "training.resources": {"training": {"resources": {"limits": {"memory": "16Gi"}}}},
    "training.nodeSelector": {"training": {"nodeSelector": {"pool": "gpu"}}},
    "training.tolerations": {"training": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}},
    "training.tags": {"training": {"tags": {"team": "vision"}}},
    "training.experiment": {"training": {"experiment": "detector-v2"}},
}


@pytest.mark.parametrize("base", [{}, SWEEP], ids=["single-job", "sweep"])
@pytest.mark.parametrize("setting", CONNECTION)
def test_a_connection_setting_keeps_every_training_job_as_it_is(tmp_path: Path, setting: str, base: dict) -> None:
    values, reaches_pods = CONNECTION[setting]
    before, after = render(tmp_path, base), render(tmp_path, merged(base, values))
    assert not reaches_pods(before) and reaches_pods(after), f"{setting} does not reach the training pods"
    old, new = jobs(before), jobs(after)
    assert sorted(old) == sorted(new) and old, (sorted(old), sorted(new))
    for variant in old:
        assert new[variant]["metadata"]["name"] == old[variant]["metadata"]["name"], f"{setting} starts a new training"
        # same name: the same spec, or `helm upgrade` fails on the immutable pod template
        assert new[variant]["spec"] == old[variant]["spec"], f"{setting} changes the pod template of a kept Job"


@pytest.mark.parametrize("setting", TRAINING)
def test_a_training_value_starts_a_new_job(tmp_path: Path, setting: str) -> None:
    [old] = jobs(render(tmp_path, {})).values()
    [new] = jobs(render(tmp_path, TRAINING[setting])).values()
    assert new["metadata"]["name"] != old["metadata"]["name"], f"{setting} keeps the finished Job (no new training)"


def test_a_variant_change_renames_only_that_variants_job(tmp_path: Path) -> None:
    old = jobs(render(tmp_path, SWEEP))
    new = jobs(render(tmp_path, merged(SWEEP, {"training": {"variants": {"adam": {"params": {"epochs": 9}}}}})))
    assert new["sgd"] == old["sgd"]
    assert new["adam"]["metadata"]["name"] != old["adam"]["metadata"]["name"]
