"""The real one-node Kubernetes behind `ci/node` (usage there): ci/cluster's control plane plus containerd, kubelet,
kube-proxy, CoreDNS and an OCI registry, all inside a network namespace of its own (nothing is routed out of it).

Every node process starts through `nsenter --net=` (not `ip netns exec`: its private mount namespace would hide
kubelet's mounts). Configs are the templates of ci/node.d/, rendered into a per-run folder.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pki
import procs
from cluster import Cluster, locked
from procs import ROOT, Failure, Procs, logger, ok, sh

CONF = ROOT / "ci" / "node.d"
NODE_NAME = "mlflow-stack-node"
NODE_IP = "10.255.0.1"  # on a veth pair whose both ends live in the namespace (no `dummy` links on this kernel)
PEER_IP = "10.255.0.2"
POD_CIDR = "10.88.0.0/16"
CGROUP = "mlflow-stack-node"  # kubelet's cgroupRoot: every pod's cgroup is under it, in each v1 hierarchy
SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops")  # kubelet changes them; `down` restores
DAEMONS = ("containerd", "kubelet", "kube-proxy", "coredns", "registry")
PV_COUNT = 24
RUN_PREFIX = "mlflow-stack-node."
REGISTRY_USER = "mlflow-stack"


def unsupported() -> str:
    """Why this kernel cannot run the node ("" when it can)."""
    if os.geteuid() != 0:
        return "needs root"
    if not ok("unshare", "-n", "true"):
        return "the kernel refuses network namespaces (unshare -n)"
    if not Path("/sys/fs/cgroup/memory").is_dir() and not Path("/sys/fs/cgroup/cgroup.controllers").is_file():
        return "no cgroup hierarchy with the memory controller"
    if "overlay" not in Path("/proc/filesystems").read_text().split():
        return "no overlayfs"
    return ""


@dataclass
class Node:
    state: Path
    data: Path  # containerd's image store and the registry's storage: kept across down/up
    netns: str
    bin: Path = ROOT / ".tools" / "bin"
    log = logger("node")
    procs: Procs = field(init=False)
    cluster: Cluster = field(init=False)
    pause_image: str = field(init=False, default="")  # the sandbox image, set by `up` (ci/images.sh names it)

    def __post_init__(self) -> None:
        self.ns = ["nsenter", f"--net=/run/netns/{self.netns}"]
        self.procs = Procs(self.state, self.log, self.ns)
        self.cluster = Cluster(self.state / "cluster", self.bin, NODE_IP, self.ns)

    @property
    def run(self) -> Path | None:
        path = self.state / "rundir"
        return Path(path.read_text().strip()) if path.exists() else None

    @property
    def nspath(self) -> Path:
        return Path("/run/netns") / self.netns

    def kubectl(self, *args: str | Path) -> list[str]:
        return self.cluster.kubectl(*args)

    def ctr(self, *args: str) -> list[str]:
        assert self.run is not None
        return ["ctr", "--address", f"{self.run}/containerd/containerd.sock", "--namespace", "k8s.io", *args]

    def check_tools(self) -> None:
        for tool in ("containerd", "runc", "ctr", "iptables", "buildah", "/usr/lib/cni/bridge"):
            if not shutil.which(tool):
                raise Failure(f"{tool} missing: run ci/install-node-tools.sh (or make setup)")
        for tool in ("kubelet", "kube-proxy", "coredns", "kubectl"):
            if not os.access(self.bin / tool, os.X_OK):
                raise Failure(f"{self.bin / tool} missing: run ci/install-node-tools.sh (or make setup)")

    def healthy(self) -> bool:
        if self.run is None or not self.nspath.exists():
            return False
        self.procs.run_dir = self.run
        if not self.procs.all_alive(len(DAEMONS)):
            if exited := self.procs.first_exited():
                self.log.info("%s", exited)
            return False
        if not self.cluster.healthy():
            return False
        ready = subprocess.run(self.kubectl("get", "node", NODE_NAME, "-o",
                                            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"),
                               capture_output=True, text=True)  # fmt: skip
        return ready.stdout.strip() == "True"

    # --- down ------------------------------------------------------------------------------------------------------
    def _node_pids(self, run: Path) -> list[int]:
        """Processes started by our containerd (runc shims, and through them every container): they carry its socket
        path or live in the node's cgroups. Only those are killed."""
        pids: set[int] = set()
        for group in Path("/sys/fs/cgroup").glob(f"*/{CGROUP}"):
            for procs in group.rglob("cgroup.procs"):
                try:
                    pids |= {int(p) for p in procs.read_text().split()}
                except OSError:
                    pass
        needle = f"{run}/containerd/".encode()
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and needle in (proc / "cmdline").read_bytes():
                    pids.add(int(proc.name))
            except OSError:
                pass
        return sorted(pids - {os.getpid()})

    def _kill_node_processes(self, run: Path) -> None:
        for pid in self._node_pids(run):
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    def _unmount_under(self, *folders: Path) -> None:
        """Every mount point below the folders, deepest first."""
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for folder in folders:
            below = sorted((m for m in mounts if (m + "/").startswith(f"{folder}/")), reverse=True)
            for mount in below:
                if not ok("umount", mount) and not ok("umount", "-l", mount):
                    self.log.info("could not unmount %s", mount)

    def _remove_cgroups(self) -> None:
        for group in Path("/sys/fs/cgroup").glob(f"*/{CGROUP}"):
            for d in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                try:
                    d.rmdir()
                except OSError:
                    pass
            try:
                group.rmdir()
            except OSError:
                self.log.info("cgroup %s still busy", group)

    def down(self) -> None:
        run = self.run
        entries = self.procs.entries()
        if entries:  # kubelet first, so it restarts nothing; then the containers; then containerd and the rest
            self.procs.stop([e for e in entries if e[0] == "kubelet"])
            if run:
                self._kill_node_processes(run)
            self.procs.stop([e for e in entries if e[0] != "kubelet"])
        self.procs.pids_file.unlink(missing_ok=True)
        if run:
            self._kill_node_processes(run)  # shims outlive containerd
        self.cluster.down()
        self._unmount_under(*([run] if run else []), self.data)
        self._remove_cgroups()
        if self.nspath.exists():
            sh("ip", "netns", "del", self.netns)
        saved = self.state / "sysctls"
        if saved.exists():
            sh("sysctl", "-q", "-p", saved)
            saved.unlink()
        if run and run.name.startswith(RUN_PREFIX):
            self.procs.run_dir = run
            self.procs.keep_logs()
            shutil.rmtree(run, ignore_errors=True)
        (self.state / "rundir").unlink(missing_ok=True)

    # --- up --------------------------------------------------------------------------------------------------------
    def render(self, template: str, **extra: str) -> str:
        """ci/node.d/TEMPLATE with $RUN, $NODE_IP, ... substituted (only these names; anything else stays)."""
        values = dict(RUN=str(self.run), DATA=str(self.data), NODE_IP=NODE_IP, NODE_NAME=NODE_NAME,
                      POD_CIDR=POD_CIDR, CGROUP=CGROUP, KUBECONFIG_FILE=str(self.cluster.kubeconfig),
                      PAUSE_IMAGE=self.pause_image, **extra)  # fmt: skip
        return re.sub(r"\$([A-Z][A-Z_]*)", lambda m: values.get(m.group(1), m.group(0)),
                      (CONF / template).read_text())  # fmt: skip

    def _network(self) -> None:
        ip = ["ip", "-n", self.netns]
        sh("ip", "netns", "add", self.netns)
        sh(*ip, "link", "set", "lo", "up")
        sh(*ip, "link", "add", "msn0", "type", "veth", "peer", "name", "msn1")
        sh(*ip, "addr", "add", f"{NODE_IP}/24", "dev", "msn0")
        sh(*ip, "addr", "add", f"{PEER_IP}/24", "dev", "msn1")
        sh(*ip, "link", "set", "msn0", "up")
        sh(*ip, "link", "set", "msn1", "up")
        # Service IPs need a route before kube-proxy's DNAT; it ends inside the namespace like every other one.
        sh(*ip, "route", "add", "default", "via", PEER_IP, "dev", "msn0")
        sh(*self.ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")

    def _node_pki(self, run: Path) -> None:
        """kubelet's client certificate (Node authorizer identity) and serving certificate, from the cluster's CA."""
        p, ca = run / "pki", self.cluster.run_dir() / "pki"
        p.mkdir()
        pki.cert(ca, p, "kubelet-client", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "", "clientAuth")
        pki.cert(ca, p, "kubelet-serving", f"/CN={NODE_NAME}", f"IP:{NODE_IP},DNS:{NODE_NAME}", "serverAuth")
        shutil.copy(ca / "ca.crt", p / "ca.crt")
        kubectl = self.bin / "kubectl"
        server = sh(kubectl, "config", "view", "--kubeconfig", self.cluster.kubeconfig, "--raw", "--minify", "-o",
                    "jsonpath={.clusters[0].cluster.server}")  # fmt: skip
        (p / "server").write_text(server)
        env = dict(os.environ, KUBECONFIG=str(run / "kubelet.kubeconfig"))
        sh(kubectl, "config", "set-cluster", "node", f"--server={server}", f"--certificate-authority={p}/ca.crt",
           "--embed-certs", env=env)  # fmt: skip
        sh(kubectl, "config", "set-credentials", "kubelet", f"--client-certificate={p}/kubelet-client.crt",
           f"--client-key={p}/kubelet-client.key", "--embed-certs", env=env)  # fmt: skip
        sh(kubectl, "config", "set-context", "node", "--cluster=node", "--user=kubelet", env=env)
        sh(kubectl, "config", "use-context", "node", env=env)

    def _cgroups(self) -> None:
        """kubelet checks that its cgroupRoot exists in every hierarchy; cpuset needs cpus/mems before use."""
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            if not (hierarchy / "tasks").is_file():
                continue
            (hierarchy / CGROUP).mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / name).is_file():
                    (hierarchy / CGROUP / name).write_text((hierarchy / name).read_text())

    def _storage(self, run: Path) -> None:
        """Default StorageClass + pre-created local volumes (the chart's PVCs bind to them when a pod needs one)."""
        docs = [self.render("storageclass.yaml")]
        for i in range(PV_COUNT):
            (run / "pv" / f"pv{i}").mkdir(parents=True)
            docs.append(self.render("pv.yaml", PV=f"pv{i}"))
        (run / "storage.yaml").write_text("---\n".join(docs))
        sh(*self.kubectl("apply", "--server-side", "-f", run / "storage.yaml"))

    def _registry(self, run: Path) -> None:
        """An OCI registry on NODE_IP:5000 inside the namespace (TLS from the cluster's CA, one htpasswd user with a
        password made per `up`), where `make release` pushes and containerd pulls through imagePullSecrets."""
        r, certs = run / "registry", run / "containerd" / "certs.d" / f"{NODE_IP}:5000"
        r.mkdir()
        (self.data / "registry").mkdir(parents=True, exist_ok=True)
        certs.mkdir(parents=True)
        pki.cert(self.cluster.run_dir() / "pki", run / "pki", "registry", f"/CN={NODE_IP}", f"IP:{NODE_IP}", "serverAuth")
        password = secrets.token_hex(16)
        (r / "password").touch(mode=0o600)
        (r / "password").write_text(f"{password}\n")
        # htpasswd reads the password from stdin (-i): it never appears in a command line
        (r / "htpasswd").write_text(sh("htpasswd", "-Bni", REGISTRY_USER, input=password))
        (r / "config.yml").write_text(self.render("registry.yml"))
        (certs / "hosts.toml").write_text(self.render("hosts.toml"))
        self.procs.start("registry", self.bin / "registry", "serve", r / "config.yml")
        # 401 without credentials: up, TLS right, auth on
        curl = [*self.ns, "curl", "-sS", "--max-time", "2", "--cacert", run / "pki" / "ca.crt", "-o", "/dev/null",
                "-w", "%{http_code}", f"https://{NODE_IP}:5000/v2/"]  # fmt: skip
        self.procs.wait_for("registry", 30, lambda: subprocess.run(
            [str(c) for c in curl], capture_output=True, text=True).stdout == "401")

    def up(self) -> None:
        if why := unsupported():
            raise Failure(f"real node unsupported here: {why}")
        self.check_tools()
        self.state.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        if self.healthy():
            self.log.info("already up (ci/node exec kubectl ...; KUBECONFIG=%s inside netns %s)",
                          self.cluster.kubeconfig, self.netns)  # fmt: skip
            return
        self.down()  # leftovers of a dead or half-started run
        t0 = time.monotonic()
        run = self.procs.new_run(RUN_PREFIX, self._start, self.down)
        self.log.info("up in %ds (ci/node exec kubectl ...; logs in %s/log)", time.monotonic() - t0, run)

    def _start(self, run: Path) -> None:
        for d in ("log", "cni/net.d", "containerd"):
            (run / d).mkdir(parents=True)
        (self.data / "containerd").mkdir(parents=True, exist_ok=True)
        self.pause_image = sh("bash", "ci/images.sh", "ref", "pause").strip()
        (self.state / "sysctls").write_text(
            "".join(sh("sysctl", s).replace(" ", "") for s in SYSCTLS))  # fmt: skip

        self._network()
        self.cluster.up()
        self._node_pki(run)
        self._cgroups()
        start, wait = self.procs.start, self.procs.wait_for

        (run / "containerd.toml").write_text(self.render("containerd.toml"))
        (run / "cni" / "net.d" / "10-mlflow-stack.conflist").write_text(self.render("cni.conflist"))
        start("containerd", "containerd", "--config", run / "containerd.toml")
        wait("containerd", 30, lambda: ok(*self.ctr("version")))
        self.load([self.pause_image])

        (run / "kubelet.yaml").write_text(self.render("kubelet.yaml"))
        (run / "resolv.conf").write_text("")
        start("kubelet", self.bin / "kubelet", f"--config={run}/kubelet.yaml", f"--kubeconfig={run}/kubelet.kubeconfig",
              f"--root-dir={run}/kubelet", f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}", "--v=1")  # fmt: skip
        (run / "kube-proxy.yaml").write_text(self.render("kube-proxy.yaml"))
        start("kube-proxy", self.bin / "kube-proxy", f"--config={run}/kube-proxy.yaml", "--v=1")
        (run / "Corefile").write_text(self.render("Corefile"))
        start("coredns", self.bin / "coredns", "-conf", run / "Corefile")
        wait("CoreDNS", 60, lambda: ok(*self.ns, "curl", "-fsS", "--max-time", "2", "http://127.0.0.1:8181/ready"))
        self._registry(run)
        wait(f"node {NODE_NAME} Ready", 120, lambda: ok(*self.kubectl(
            "wait", "--for=condition=Ready", f"node/{NODE_NAME}", "--timeout=5s")))
        self._storage(run)

    # --- load ------------------------------------------------------------------------------------------------------
    def load(self, refs: list[str]) -> None:
        """Export each image from buildah's store into the node's containerd, unless the same image (by id) was
        imported before: the store under DATA outlives down/up, so a warm `up` imports nothing."""
        run = self.run
        assert run is not None
        (self.data / "imported").mkdir(parents=True, exist_ok=True)
        for ref in refs:
            inspect = subprocess.run(["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref],
                                     capture_output=True, text=True)  # fmt: skip
            if inspect.returncode != 0:
                raise Failure(f"image {ref} is not built: run make images (ci/images.sh)")
            image_id = inspect.stdout.strip()
            stamp = self.data / "imported" / re.sub(r"[^a-zA-Z0-9._-]", "_", ref)
            present = ref in sh(*self.ctr("images", "ls", "-q")).split()
            if stamp.exists() and stamp.read_text().strip() == image_id and present:
                continue
            self.log.info("importing %s into the node", ref)
            fifo = run / "image.fifo"
            fifo.unlink(missing_ok=True)
            os.mkfifo(fifo)
            push = subprocess.Popen(["buildah", "push", "-q", ref, f"docker-archive:{fifo}:{ref}"],
                                    stdout=subprocess.DEVNULL)  # fmt: skip
            imported = subprocess.run(self.ctr("images", "import", "--no-unpack=false", str(fifo)),
                                      stdout=subprocess.DEVNULL)  # fmt: skip
            if imported.returncode != 0:
                push.kill()
                raise Failure(f"import of {ref} failed")
            if push.wait() != 0:
                raise Failure(f"buildah push of {ref} failed")
            fifo.unlink()
            stamp.write_text(f"{image_id}\n")

    def registry(self) -> str:
        assert self.run is not None
        password = (self.run / "registry" / "password").read_text().strip()
        return (f"REGISTRY_HOST={NODE_IP}:5000\nREGISTRY_USERNAME={REGISTRY_USER}\nREGISTRY_PASSWORD={password}\n"
                f"REGISTRY_CA={self.run}/pki/ca.crt\n")  # fmt: skip

    def exec(self, cmd: list[str]) -> None:
        env = dict(os.environ, KUBECONFIG=str(self.cluster.kubeconfig), PATH=f"{self.bin}:{os.environ['PATH']}")
        os.execvpe(self.ns[0], [*self.ns, *cmd], env)


def from_env() -> Node:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path(os.environ.get("HOME", "/root")) / ".cache"))
    return Node(state=Path(os.environ.get("NODE_STATE", ROOT / ".tools" / "node")),
                data=Path(os.environ.get("NODE_DATA", cache / "mlflow-stack" / "node")),
                netns=os.environ.get("NODE_NETNS", "mlflow-stack-node"))  # fmt: skip


def main(argv: list[str]) -> int:
    node = from_env()

    def check(_: list[str]) -> int:
        if why := unsupported():
            print(f"real node unsupported here: {why}")
            return 3
        node.check_tools()
        print("real node supported")
        return 0

    def up(_: list[str]) -> None:
        with locked(node.state):
            node.up()

    def down(_: list[str]) -> None:
        with locked(node.state):
            node.down()
        node.log.info("down")

    def healthy() -> None:
        if not node.healthy():
            raise Failure("node not up: ci/node up")

    def load(refs: list[str]) -> None:
        with locked(node.state):
            healthy()
            node.load(refs)

    def registry(_: list[str]) -> None:
        healthy()
        print(node.registry(), end="")

    return procs.main(node.log, "ci/node up|down|status|check|load REF...|exec CMD...|registry", {
        "check": check, "up": up, "down": down, "status": lambda _: 0 if node.healthy() else 1, "load": load,
        "exec": node.exec, "registry": registry}, argv)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
