"""The Secrets the chart's credentials hook would create, for tests that run rendered containers without a cluster.

The chart renders no generated credential (templates/credentials): its pre-install hook creates those Secrets in the
cluster, from the SECRETS list in its Job's env. A `helm template` output fed to real processes
(tests/cluster/rendered.py, charts/mlflow-stack/tests/smoke/run_rendered.py) must see them as a pod would: this adds each
one that the render lacks, with random alphanumeric values of the listed lengths, as the hook would.
"""

from __future__ import annotations

import base64
import json
import secrets
import string

ALPHABET = string.ascii_letters + string.digits


def hook_spec(docs: list[dict]) -> list[dict]:
    """The credentials hook's SECRETS ([{"name": NAME, "keys": {KEY: LENGTH}}]); [] when no hook is rendered."""
    for doc in docs:
        labels = (doc.get("metadata") or {}).get("labels") or {}
        if doc.get("kind") == "Job" and labels.get("app.kubernetes.io/component") == "credentials":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                for env in container.get("env") or []:
                    if env["name"] == "SECRETS":
                        return json.loads(env["value"])
    return []


def generated_secrets(docs: list[dict]) -> list[dict]:
    """Secret documents (base64 `data`, like rendered ones) for each Secret of the hook's list the render lacks."""
    rendered = {d["metadata"]["name"] for d in docs if d.get("kind") == "Secret"}
    out = []
    for spec in hook_spec(docs):
        if spec["name"] in rendered:  # an existing Secret appended to the render wins, as the hook's 409 keeps it
            continue
        data = {key: base64.b64encode("".join(secrets.choice(ALPHABET) for _ in range(int(n))).encode()).decode()
                for key, n in spec["keys"].items()}  # fmt: skip
        out.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": spec["name"]},
                    "data": data})  # fmt: skip
    return out
