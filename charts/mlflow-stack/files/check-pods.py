"""The object store check hook (templates/artifacts/objectstore-check.yaml): waits for the bundled object store's pod to
be Ready and, when it cannot start, exits 1 within a minute with one line naming why.

Helm waits only on hooks (`helm install` without --wait), and its messages for a failed hook name the Job and the Job
controller's reason, never the pod's: this hook's log is what `helm install` prints (helm.sh/hook-output-log-policy:
hook-failed). Causes named: a container image that cannot be pulled (ErrImagePull, ImagePullBackOff, InvalidImageName,
ErrImageNeverPull for PULL_SECONDS: the image and the kubelet's message) and a PersistentVolumeClaim of the pod not
Bound after CLAIM_SECONDS (the claim, its StorageClass and the scheduler's message: no default StorageClass, a class
that does not exist; a claim that waits for its pod's node only when the scheduler's reason is about volumes).
Anything else that keeps the pod from Ready for TIMEOUT seconds: the pod's state. Each state it waits in is printed
once (`waiting: ...`), so the log says where it stood also when Helm's --timeout ends first.

Environment: SELECTOR (label selector of the pods), POD_NAMESPACE, PULL_SECONDS, CLAIM_SECONDS, TIMEOUT,
SERVICE_ACCOUNT_DIR (token + ca.crt; default: the pod's token mount), KUBERNETES_SERVICE_HOST/PORT. Standard library
only: it runs in the server image with `python -c`, with a ServiceAccount that may get/list pods and get claims.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
POLL_SECONDS = 2


class Api:
    """GETs against the Kubernetes API with the pod's mounted token (re-read per request) and CA."""

    def __init__(self, env: dict[str, str]) -> None:
        host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise RuntimeError("KUBERNETES_SERVICE_HOST is not set: the check runs in a pod of the cluster")
        self.account = env.get("SERVICE_ACCOUNT_DIR") or "/var/run/secrets/kubernetes.io/serviceaccount"
        host = f"[{host}]" if ":" in host else host
        self.server = f"https://{host}:{port}"
        self.context = ssl.create_default_context(cafile=os.path.join(self.account, "ca.crt"))

    def get(self, path: str) -> dict:
        with open(os.path.join(self.account, "token")) as f:
            token = f.read().strip()
        req = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {token}",
                                                                  "Accept": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=10, context=self.context) as response:
            return json.loads(response.read())


def condition(pod: dict, kind: str) -> dict:
    return next((c for c in pod.get("status", {}).get("conditions", []) if c.get("type") == kind), {})


def images(pod: dict) -> dict[str, str]:
    spec = pod.get("spec", {})
    return {c["name"]: c.get("image", "") for c in spec.get("initContainers", []) + spec.get("containers", [])}


class Check:
    """One verdict per poll: "" (keep waiting), "ready: ..." or the failure line."""

    def __init__(self, get: Callable[[str], dict], namespace: str, selector: str, pull_seconds: float,
                 claim_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.get, self.namespace, self.selector = get, namespace, selector
        self.pull_seconds, self.claim_seconds, self.clock = pull_seconds, claim_seconds, clock
        self.start = clock()
        self.pulling: dict[tuple[str, str], float] = {}  # (pod, container) -> when its pull error was first seen
        self.last = "no pod yet"

    def poll(self) -> str:
        ns = self.namespace
        pods = self.get(f"/api/v1/namespaces/{ns}/pods?labelSelector={urllib.parse.quote(self.selector)}")["items"]
        pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        for pod in pods:
            if condition(pod, "Ready").get("status") == "True":
                return f"ready: pod {pod['metadata']['name']}"
        now = self.clock()
        for pod in pods:
            name, status = pod["metadata"]["name"], pod.get("status", {})
            scheduled = condition(pod, "PodScheduled")
            self.last = f"pod {name} {status.get('phase', 'Pending')}" + (
                f": {scheduled.get('message')}" if scheduled.get("status") == "False" else "")
            for cs in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
                waiting = (cs.get("state") or {}).get("waiting") or {}
                key = (name, cs["name"])
                if waiting.get("reason") not in PULL_REASONS:
                    self.pulling.pop(key, None)
                    continue
                first = self.pulling.setdefault(key, now)
                image = images(pod).get(cs["name"]) or cs.get("image", "")
                self.last = f"pod {name}: image {image} {waiting['reason']}"
                if now - first >= self.pull_seconds:
                    return (f"image {image} cannot be pulled (container {cs['name']} of pod {name}: "
                            f"{waiting['reason']}: {waiting.get('message', '').strip()}); push it or set the image values "
                            f"(see: kubectl describe pod {name} -n {ns})")
            for volume in pod.get("spec", {}).get("volumes", []):
                claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
                if not claim:
                    continue
                pvc = self.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
                phase = pvc.get("status", {}).get("phase", "Pending")
                if phase == "Bound":
                    continue
                storage_class = pvc.get("spec", {}).get("storageClassName")
                # a claim of a WaitForFirstConsumer class waits for its pod's node: blame the claim only without a
                # class, once the pod is on a node, or when the scheduler's message is about volumes (not "Insufficient
                # cpu", which a cluster autoscaler may still fix)
                about_volumes = any(w in (scheduled.get("message") or "").lower()
                                    for w in ("persistentvolumeclaim", "persistent volume", "storageclass", "volume"))
                blame = not storage_class or scheduled.get("status") == "True" or about_volumes
                if blame:
                    self.last = f"PersistentVolumeClaim {claim} {phase}"
                if blame and now - self.start >= self.claim_seconds:
                    why = f"; the scheduler: {scheduled['message']}" if scheduled.get("message") else ""
                    cls = (f"StorageClass {storage_class}" if storage_class else
                           "no StorageClass: the cluster has no default StorageClass")  # fmt: skip
                    return (f"PersistentVolumeClaim {claim} is {phase}, not bound after {int(now - self.start)}s "
                            f"({cls}){why}; set objectStore.persistence.storageClass to a class that provisions "
                            f"volumes (see: kubectl describe pvc {claim} -n {ns})")
        return ""


def main(env: dict[str, str], sleep: Callable[[float], None] = time.sleep) -> int:
    def say(line: str) -> None:
        print(f"objectstore-check: {line}", flush=True)

    try:
        api = Api(env)
        check = Check(api.get, env["POD_NAMESPACE"], env["SELECTOR"], float(env.get("PULL_SECONDS") or 30),
                      float(env.get("CLAIM_SECONDS") or 45), clock=time.monotonic)  # fmt: skip
        deadline = time.monotonic() + float(env.get("TIMEOUT") or 300)
    except (KeyError, ValueError, RuntimeError, OSError) as exc:
        say(f"bad environment ({type(exc).__name__}: {exc})")
        return 1
    told = ""
    while True:
        try:
            verdict = check.poll()
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:  # API not reachable yet, RBAC lag
            verdict, check.last = "", f"Kubernetes API: {exc}"
        if verdict.startswith("ready: "):
            say(verdict)
            return 0
        if verdict:
            say(verdict)
            return 1
        if check.last != told:  # each new state once: the log tells the story also when Helm's --timeout ends it
            say(f"waiting: {check.last}")
            told = check.last
        if time.monotonic() >= deadline:
            say(f"the object store is not ready after {env.get('TIMEOUT') or 300}s: {check.last} "
                f"(see: kubectl describe pod -n {env['POD_NAMESPACE']} -l {env['SELECTOR']})")
            return 1
        sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main(dict(os.environ)))
