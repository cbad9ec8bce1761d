"""The credentials hook (templates/credentials/job.yaml): creates each generated Secret the chart needs once, when missing.

No rendered manifest carries a generated value (`helm template` gives the same text every time, as Argo CD needs): this
script, run as a pre-install/pre-upgrade hook with its own create-only ServiceAccount, POSTs each Secret of $SECRETS
with random alphanumeric values. 201: created; 409: it exists and is kept as it is (the hook can neither read nor change
it). 403 (the Role's RoleBinding may not be effective yet), 429, 5xx and connection errors are retried every 2 s until
$TIMEOUT seconds, then it exits 1 with one line naming the Secret and the HTTP status.

Environment: SECRETS (JSON [{"name": NAME, "keys": {KEY: LENGTH}}]), POD_NAMESPACE, LABELS (JSON), TIMEOUT (seconds),
JOB_NAME (for the generated-by annotation), SERVICE_ACCOUNT_DIR (token + ca.crt; default: the pod's token mount),
KUBERNETES_SERVICE_HOST/PORT. Standard library only: it runs in the server image with `python -c`.
The values are never logged and never in argv: only the key names are.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import ssl
import string
import sys
import time
import urllib.error
import urllib.request
from typing import Callable

log = logging.getLogger("create-secrets")
ALPHABET = string.ascii_letters + string.digits
ANNOTATION = "mlflow-stack.io/generated-by"
RETRY_SECONDS = 2
# 403: RBAC of a RoleBinding applied just before may lag; 429/5xx: an API server that is busy or restarting
RETRY_STATUS = {403, 429, 500, 502, 503, 504}


class HookError(Exception):
    """The one line the hook exits with."""


def random_value(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def reason(exc: Exception) -> str:
    """HTTP status and the API server's message (a Status object's `message`), or the connection error, on one line."""
    if isinstance(exc, urllib.error.HTTPError):
        try:
            message = json.loads(exc.read()).get("message") or exc.reason
        except (ValueError, OSError, AttributeError):
            message = exc.reason
        return f"HTTP {exc.code} {exc.reason}: {message}"
    text = str(getattr(exc, "reason", exc)) or type(exc).__name__
    return (text.strip().splitlines() or [type(exc).__name__])[0][:300]


class Api:
    """The Kubernetes API as the pod sees it: KUBERNETES_SERVICE_HOST/PORT, the mounted token (re-read per request:
    bound tokens are rotated) and CA; the same idea as `trainer follow-alias --service-account-dir`."""

    def __init__(self, env: dict[str, str]) -> None:
        host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise HookError("KUBERNETES_SERVICE_HOST is not set: the credentials hook runs in a pod of the cluster")
        self.account = env.get("SERVICE_ACCOUNT_DIR") or "/var/run/secrets/kubernetes.io/serviceaccount"
        if not os.path.isfile(os.path.join(self.account, "token")):
            raise HookError(f"no ServiceAccount token in {self.account} (automountServiceAccountToken off?)")
        host = f"[{host}]" if ":" in host else host
        self.server = f"https://{host}:{port}"
        self.context = ssl.create_default_context(cafile=os.path.join(self.account, "ca.crt"))

    def post(self, path: str, body: dict) -> int:
        with open(os.path.join(self.account, "token")) as f:
            token = f.read().strip()
        req = urllib.request.Request(self.server + path, data=json.dumps(body).encode(), method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=10, context=self.context) as response:
            return response.status


def secret_body(name: str, keys: dict[str, int], labels: dict[str, str], generated_by: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "labels": labels, "annotations": {ANNOTATION: generated_by}},
            "stringData": {key: random_value(int(length)) for key, length in keys.items()}}


def create(api: Api, namespace: str, spec: dict, labels: dict[str, str], generated_by: str, deadline: float,
           sleep: Callable[[float], None] = time.sleep) -> str:
    """Creates one Secret (or keeps the existing one); returns what it did, in the words it logs."""
    name, keys = spec["name"], spec["keys"]
    waiting = False
    while True:
        try:
            api.post(f"/api/v1/namespaces/{namespace}/secrets", secret_body(name, keys, labels, generated_by))
            return f"created Secret {name} (keys: {', '.join(sorted(keys))})"
        except urllib.error.HTTPError as exc:
            if exc.code == 409:
                return f"Secret {name} exists: kept"
            if exc.code not in RETRY_STATUS:
                raise HookError(f"Secret {name} not created: {reason(exc)}") from None
            last = reason(exc)
        except OSError as exc:  # connection refused/reset, DNS, TLS, timeouts (URLError is one)
            last = reason(exc)
        if time.monotonic() >= deadline:
            raise HookError(f"Secret {name} not created within TIMEOUT: {last}")
        if not waiting:
            log.info("Secret %s: %s; retrying every %ss", name, last, RETRY_SECONDS)
            waiting = True
        sleep(RETRY_SECONDS)


def main(env: dict[str, str]) -> int:
    logging.basicConfig(level=logging.INFO, format="create-secrets: %(message)s", stream=sys.stdout)
    try:
        specs = json.loads(env["SECRETS"])
        labels = json.loads(env.get("LABELS") or "{}")
        namespace = env["POD_NAMESPACE"]
        deadline = time.monotonic() + float(env.get("TIMEOUT") or 120)
        api = Api(env)
        for spec in specs:
            log.info("%s", create(api, namespace, spec, labels, env.get("JOB_NAME") or "credentials hook", deadline))
    except HookError as exc:
        print(f"create-secrets: {exc}", file=sys.stderr)
        return 1
    except (KeyError, ValueError) as exc:
        print(f"create-secrets: bad environment ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(dict(os.environ)))
