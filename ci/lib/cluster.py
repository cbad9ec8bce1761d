"""The throwaway control plane behind `ci/cluster` (usage there): etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok on 127.0.0.1, certificates and service-account keys made per run.

ci/node (node.py) starts the same control plane inside its network namespace for a real node (Cluster.node_ip set,
commands prefixed with nsenter): the API server then also listens on the node's address, kwok keeps only the fake GPU
node, and storage comes from the node's local volumes instead of kwok's. What kwok fakes: ci/cluster.d/README.md.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pki
import procs
from ports import free_ports
from procs import ROOT, Failure, Procs, logger, ok, sh

CONF = ROOT / "ci" / "cluster.d"
DAEMONS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
RUN_PREFIX = "mlflow-stack-cluster."
# kwok's own stages, from the pinned module; the volume ones only without a real node (it has local volumes)
KWOK_STAGES = ("node/fast/node-initialize.yaml", "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
               "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml")  # fmt: skip
KWOK_VOLUME_STAGES = ("volume/fast/pvc-provision.yaml", "volume/fast/pv-bind.yaml", "volume/fast/pvc-delete.yaml",
                      "volume/fast/pv-delete.yaml")  # fmt: skip


@contextmanager
def locked(state: Path) -> Iterator[None]:
    """One `up`/`down` at a time per state folder (flock on STATE/lock; daemons do not inherit it)."""
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def module_dir(gomod: str, module: str) -> Path:
    """Source folder of a Go module pinned (and downloaded) by ci/install-cluster-tools.sh under ci/gomod/GOMOD."""
    out = sh("go", "list", "-m", "-f", "{{.Dir}}", module, env=dict(os.environ, GOFLAGS="-mod=readonly"),
             cwd=ROOT / "ci" / "gomod" / gomod).strip()  # fmt: skip
    if not out or not Path(out).is_dir():
        raise Failure(f"module {module} not downloaded; run ci/install-cluster-tools.sh")
    return Path(out)


@dataclass
class Cluster:
    state: Path
    bin: Path
    node_ip: str = ""
    prefix: Sequence[str] = ()  # every command runs through it (nsenter into the node's namespace, for ci/node)
    log = logger("cluster")
    procs: Procs = field(init=False)

    def __post_init__(self) -> None:
        self.procs = Procs(self.state, self.log, self.prefix)

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    def kubectl(self, *args: str | Path) -> list[str]:
        return [*self.prefix, str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig), "--request-timeout=10s",
                *map(str, args)]  # fmt: skip

    def healthy(self) -> bool:
        return self.procs.all_alive(len(DAEMONS)) and ok(*self.kubectl("get", "--raw", "/readyz"))

    def run_dir(self) -> Path | None:
        path = self.state / "rundir"
        return Path(path.read_text().strip()) if path.exists() else None

    def down(self) -> None:
        entries = self.procs.entries()
        if entries:  # etcd last, so the API server never waits for a vanished etcd
            self.procs.stop([e for e in entries if e[0] != "etcd"])
            self.procs.stop([e for e in entries if e[0] == "etcd"])
        self.procs.pids_file.unlink(missing_ok=True)
        run = self.run_dir()
        if run is not None:
            if run.name.startswith(RUN_PREFIX):
                self.procs.run_dir = run
                self.procs.keep_logs()
                shutil.rmtree(run, ignore_errors=True)
            (self.state / "rundir").unlink()
        self.kubeconfig.unlink(missing_ok=True)

    def up(self) -> None:
        for name in (*DAEMONS, "kubectl"):
            if not os.access(self.bin / name, os.X_OK):
                raise Failure(f"{self.bin / name} missing; run ci/install-cluster-tools.sh (or make setup)")
        self.state.mkdir(parents=True, exist_ok=True)
        if self.healthy():
            self.log.info("already up (KUBECONFIG=%s)", self.kubeconfig)
            return
        self.down()  # leftovers of a dead or half-started run
        t0 = time.monotonic()
        run = self.procs.new_run(RUN_PREFIX, self._start, self.down)
        self.log.info("up in %ds (KUBECONFIG=%s; logs in %s/log)", time.monotonic() - t0, self.kubeconfig, run)

    def _pki(self, p: Path) -> None:
        pki.ca(p)
        node_ip = f",IP:{self.node_ip}" if self.node_ip else ""
        pki.cert(p, p, "apiserver", "/CN=kube-apiserver", "IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,"
                 f"DNS:kubernetes.default,DNS:kubernetes.default.svc{node_ip}", "serverAuth")  # fmt: skip
        pki.cert(p, p, "admin", "/O=system:masters/CN=mlflow-stack-admin", "", "clientAuth")
        pki.cert(p, p, "kwok", "/CN=kwok", "IP:127.0.0.1", "serverAuth")
        sh("openssl", "genrsa", "-out", p / "sa.key", "2048")
        sh("openssl", "rsa", "-in", p / "sa.key", "-pubout", "-out", p / "sa.pub")

    def _write_kubeconfig(self, p: Path, api_port: int) -> None:
        def b64(name: str) -> str:
            return base64.b64encode((p / name).read_bytes()).decode()

        tmp = self.kubeconfig.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: mlflow-stack-test
  cluster:
    server: https://127.0.0.1:{api_port}
    certificate-authority-data: {b64("ca.crt")}
users:
- name: admin
  user:
    client-certificate-data: {b64("admin.crt")}
    client-key-data: {b64("admin.key")}
contexts:
- name: mlflow-stack-test
  context: {{cluster: mlflow-stack-test, user: admin}}
current-context: mlflow-stack-test
""")
        tmp.replace(self.kubeconfig)

    def _kwok_stages(self) -> str:
        base = module_dir("kwok", "sigs.k8s.io/kwok") / "kustomize" / "stage"
        stages = [*KWOK_STAGES, *(() if self.node_ip else KWOK_VOLUME_STAGES)]
        return "".join(f"---\n{(base / s).read_text()}" for s in stages) + f"---\n{(CONF / 'stages.yaml').read_text()}"

    def _start(self, run: Path) -> None:
        (run / "log").mkdir()
        etcd_port, peer_port, api_port, kwok_port = free_ports(4)
        p = run / "pki"
        self._pki(p)
        self._write_kubeconfig(p, api_port)
        start, wait, b = self.procs.start, self.procs.wait_for, self.bin
        curl = [*self.prefix, "curl", "-fsS", "--max-time", "2"]

        etcd = f"http://127.0.0.1:{etcd_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        start("etcd", b / "etcd", "--name=t", f"--data-dir={run}/etcd", "--unsafe-no-fsync", "--log-level=warn",
              f"--listen-client-urls={etcd}", f"--advertise-client-urls={etcd}", f"--listen-peer-urls={peer}",
              f"--initial-advertise-peer-urls={peer}", f"--initial-cluster=t={peer}", "--listen-metrics-urls=")  # fmt: skip
        wait("etcd", 30, lambda: ok(*curl, f"{etcd}/readyz"))

        # No admission webhooks (nothing may dial out of 127.0.0.1). Without a real node the endpoint reconciler is off
        # because Endpoints may not point at a loopback address (the `kubernetes` Service simply has no endpoints).
        listen = (["--bind-address=0.0.0.0", f"--advertise-address={self.node_ip}"] if self.node_ip else
                  ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"])  # fmt: skip
        start("kube-apiserver", b / "kube-apiserver", f"--etcd-servers={etcd}", *listen, f"--secure-port={api_port}",
              f"--cert-dir={p}", f"--tls-cert-file={p}/apiserver.crt", f"--tls-private-key-file={p}/apiserver.key",
              f"--client-ca-file={p}/ca.crt", "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
              f"--service-account-key-file={p}/sa.pub", f"--service-account-signing-key-file={p}/sa.key",
              "--service-cluster-ip-range=10.96.0.0/16", "--authorization-mode=Node,RBAC", "--allow-privileged=true",
              "--disable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
              f"--kubelet-certificate-authority={p}/ca.crt", "--kubelet-preferred-address-types=InternalIP",
              f"--kubelet-client-certificate={p}/admin.crt", f"--kubelet-client-key={p}/admin.key",
              "--enable-priority-and-fairness=false", "--profiling=false", "--v=1")  # fmt: skip
        wait("kube-apiserver", 90, lambda: ok(*self.kubectl("get", "--raw", "/readyz")))

        common = [f"--kubeconfig={self.kubeconfig}", "--bind-address=127.0.0.1", "--secure-port=0",
                  "--leader-elect=false", "--profiling=false", "--v=1"]  # fmt: skip
        start("kube-controller-manager", b / "kube-controller-manager", *common,
              "--use-service-account-credentials=true", f"--service-account-private-key-file={p}/sa.key",
              f"--root-ca-file={p}/ca.crt", f"--cluster-signing-cert-file={p}/ca.crt",
              f"--cluster-signing-key-file={p}/ca.key", "--controllers=*,-node-ipam-controller,-node-route-controller,"
              "-cloud-node-lifecycle-controller,-service-lb-controller")  # fmt: skip
        start("kube-scheduler", b / "kube-scheduler", *common)

        (run / "kwok.yaml").write_text(self._kwok_stages())
        start("kwok", b / "kwok", f"--config={run}/kwok.yaml", f"--kubeconfig={self.kubeconfig}",
              "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
              "--node-ip=127.0.0.1", f"--node-port={kwok_port}", f"--server-address=127.0.0.1:{kwok_port}",
              f"--tls-cert-file={p}/kwok.crt", f"--tls-private-key-file={p}/kwok.key", "--cidr=10.244.0.0/16",
              "--node-lease-duration-seconds=40", "-v=WARN")  # fmt: skip

        # Fake nodes, default StorageClass, RuntimeClass, the ServiceMonitor and HTTPRoute CRDs; then wait until the
        # nodes are Ready and pods can be admitted.
        crd = (module_dir("prometheus-operator", "github.com/prometheus-operator/prometheus-operator") / "example"
               / "prometheus-operator-crd" / "monitoring.coreos.com_servicemonitors.yaml")  # fmt: skip
        route_crd = (module_dir("gateway-api", "sigs.k8s.io/gateway-api") / "config" / "crd" / "standard"
                     / "gateway.networking.k8s.io_httproutes.yaml")  # fmt: skip
        objects = ["-f", CONF / "objects.yaml", *(() if self.node_ip else ("-f", CONF / "objects-kwok.yaml")),
                   "-f", crd, "-f", route_crd]  # fmt: skip
        wait("cluster objects", 30, lambda: ok(*self.kubectl("apply", "--server-side", *objects)))
        wait("ServiceMonitor and HTTPRoute CRDs", 30, lambda: ok(*self.kubectl(
            "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com",
            "crd/httproutes.gateway.networking.k8s.io", "--timeout=5s")))
        wait("fake nodes", 60, lambda: ok(*self.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=5s")))
        wait("default service account", 60, lambda: ok(*self.kubectl("-n", "default", "get", "serviceaccount", "default")))


def from_env() -> Cluster:
    return Cluster(state=Path(os.environ.get("CLUSTER_STATE", ROOT / ".tools" / "cluster")),
                   bin=Path(os.environ.get("CLUSTER_BIN", ROOT / ".tools" / "bin")))  # fmt: skip


def main(argv: list[str]) -> int:
    cluster = from_env()

    def up(_: list[str]) -> None:
        with locked(cluster.state):
            cluster.up()

    def down(_: list[str]) -> None:
        with locked(cluster.state):
            cluster.down()
        cluster.log.info("down")

    return procs.main(cluster.log, "ci/cluster up|down|status|env", {
        "up": up, "down": down, "status": lambda _: 0 if cluster.healthy() else 1,
        "env": lambda _: print(f"export KUBECONFIG={cluster.kubeconfig}")}, argv)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
