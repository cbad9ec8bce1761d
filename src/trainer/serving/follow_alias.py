"""`trainer follow-alias`: keep the serving Deployment pinned to the version a registry alias points at.

Every interval it resolves `models:/NAME@ALIAS` and, when that is not the version in the Deployment's pod template,
patches the template's annotation: the Deployment rolls (new pods Ready before old ones go), and every pod serves the
one version its template names. The chart never renders that annotation, so `helm upgrade` keeps it. It talks to the
Kubernetes API with the pod's ServiceAccount token, which may only get and patch that one Deployment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

VERSION = "mlflow-stack.io/model-version"  # on the pod template (pins the pods) and on the Deployment (for kubectl)
STATUS = "mlflow-stack.io/status"  # on the Deployment: what is served, or why nothing is
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class FollowError(ValueError):
    """A bad flag or in-cluster setting; the message names it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="registered model name")
    parser.add_argument("--alias", default="champion", help="alias to follow [champion]")
    parser.add_argument("--deployment", required=True, help="the serving Deployment to pin (same namespace)")
    parser.add_argument("--interval-seconds", type=float, default=60, help="seconds between checks [60]")
    parser.add_argument("--mlflow-uri", default=os.environ.get("MLFLOW_TRACKING_URI", ""),
                        help="MLflow tracking URI [env MLFLOW_TRACKING_URI]")  # fmt: skip
    parser.add_argument("--service-account-dir", type=Path, default=SERVICE_ACCOUNT,
                        help=f"where the pod's ServiceAccount token, ca.crt and namespace are mounted [{SERVICE_ACCOUNT}]")  # fmt: skip


@dataclass(frozen=True)
class KubeApi:
    """The Kubernetes API as the pod sees it: KUBERNETES_SERVICE_HOST/PORT, the mounted token (re-read per request:
    bound tokens are rotated) and CA."""

    server: str
    account: Path
    namespace: str

    @classmethod
    def in_cluster(cls, account: Path, env: dict[str, str]) -> KubeApi:
        host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise FollowError("KUBERNETES_SERVICE_HOST is not set: follow-alias runs in a pod of the cluster")
        try:
            namespace = (account / "namespace").read_text().strip()
        except OSError as exc:
            raise FollowError(f"--service-account-dir {account}: {exc.strerror} (no ServiceAccount token mounted?)") from None
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", account, namespace)

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Authorization": f"Bearer {(self.account / 'token').read_text().strip()}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/strategic-merge-patch+json"
        req = urllib.request.Request(self.server + path, data=data, headers=headers, method=method)
        context = ssl.create_default_context(cafile=str(self.account / "ca.crt"))
        with urllib.request.urlopen(req, timeout=30, context=context) as response:
            return json.loads(response.read())

    def deployment_path(self, name: str) -> str:
        return f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}"


def resolve(client: MlflowClient, model: str, alias: str) -> tuple[str, str]:
    """(version, "") for the version ALIAS points at, or ("", why) when there is none yet."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version), ""
    except MlflowException as exc:
        missing = exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")
        if exc.error_code == "PERMISSION_DENIED":  # MLflow's auth says 403, not 404, to a non-admin when the model
            missing = not model_exists(client, model)  # does not exist yet; READ on the model itself tells them apart
        if not missing:
            raise
        return "", f"no version of registered model '{model}' has the alias '{alias}' yet"


def model_exists(client: MlflowClient, model: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model)
        return True
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return False


def step(api: KubeApi, client: MlflowClient, args: argparse.Namespace) -> None:
    """One check: pin the alias's version when it moved, or record why nothing (new) is served."""
    deployment = api.request("GET", api.deployment_path(args.deployment))
    template = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    live = template.get(VERSION, "")
    status_now = (deployment["metadata"].get("annotations") or {}).get(STATUS, "")
    version, why = resolve(client, args.model, args.alias)
    if version:
        status = f"serving models:/{args.model}/{version} (@{args.alias})"
    elif live:  # the alias was removed: keep serving what was pinned rather than nothing
        status = f"serving models:/{args.model}/{live}; {why}"
    else:
        status = f"waiting: {why}"
    patch: dict = {"metadata": {"annotations": {STATUS: status}}}
    if version and version != live:
        log.info("@%s is version %s (was %s): rolling %s to it", args.alias, version, live or "none", args.deployment)
        patch["metadata"]["annotations"][VERSION] = version
        patch["spec"] = {"template": {"metadata": {"annotations": {VERSION: version}}}}
    elif status != status_now:
        log.info("%s", status)
    else:
        return
    api.request("PATCH", api.deployment_path(args.deployment), patch)


def first_line(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        try:
            return f"HTTP {exc.code}: {json.loads(exc.read()).get('message', exc.reason)}"
        except (ValueError, OSError):
            return f"HTTP {exc.code}: {exc.reason}"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def follow(api: KubeApi, client: MlflowClient, args: argparse.Namespace, sleep: Callable[[float], None] = time.sleep,
           rounds: int | None = None) -> None:
    """Check every interval, forever (or ROUNDS times); a failed check (server or API unreachable, a 403) is logged
    and retried at the next one: serving keeps the version it has."""
    done = 0
    while rounds is None or done < rounds:
        try:
            step(api, client, args)
        except Exception as exc:  # noqa: BLE001 - MLflow, network and API errors alike: log, keep following
            log.warning("check failed, retrying in %gs: %s", args.interval_seconds, first_line(exc))
        done += 1
        if rounds is None or done < rounds:
            sleep(args.interval_seconds)


def run(args: argparse.Namespace, env: dict[str, str]) -> None:
    from mlflow.tracking import MlflowClient

    if args.interval_seconds < 1:
        raise FollowError(f"--interval-seconds {args.interval_seconds:g}: must be at least 1")
    api = KubeApi.in_cluster(args.service_account_dir, env)
    log.info("following models:/%s@%s for deployment %s/%s every %gs", args.model, args.alias, api.namespace,
             args.deployment, args.interval_seconds)  # fmt: skip
    follow(api, MlflowClient(args.mlflow_uri or None), args)
