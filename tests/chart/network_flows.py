"""The connections the chart's pods need, and some they must be refused, derived from one render and its values.

Which components exist comes from the render (its pods, Services, Ingresses, HTTPRoutes, ServiceMonitors); what lies
outside the release (an external database, the S3 endpoint, the OIDC issuer, serverFrom peers) from the values. Pods and
addresses that are not the release's stand in below: kube-dns pods, an ingress controller's, arbitrary addresses.
`table()` turns the flows of several renders into docs/chart.md's table of flows and the policies admitting them.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from netpol import Cluster, ContainerPort, Endpoint, Pod, selector_matches

NAMESPACE = "ml"  # the release's namespace in every render
COMPONENT = "app.kubernetes.io/component"
# The docs' name of each component the chart's pods carry: a new component fails test_every_component_has_a_name.
NAMES = {
    "server": "server", "objectstore": "object store", "backend": "PostgreSQL", "training": "training",
    "artifacts": "bucket hook", "credentials": "credentials hook", "test": "`helm test` pods", "serving": "serving",
    "serving-follower": "serving follower", "gc": "gc", "objectstore-check": "object store check",
}  # fmt: skip

# Stand-ins for what is not the release's: the addresses are arbitrary, only their kind (pod or address) matters.
KUBE_DNS = Pod("coredns", "kube-system", {"k8s-app": "kube-dns"},
               (ContainerPort("dns", 53, "UDP"), ContainerPort("dns-tcp", 53)))  # fmt: skip
NODELOCAL_DNS = "169.254.20.10"
PUBLIC_DNS = "8.8.8.8"
API_SERVER = "192.168.49.2"  # the `kubernetes` Service's endpoint: a control-plane node, not a pod
ISSUER = "203.0.113.10"
DATABASE = "10.100.0.20"
STORAGE = "52.219.170.10"
INTERNET = "140.82.121.3"  # github.com, where the default training downloads its weights
ANYWHERE = "198.51.100.7"
STRANGER = Pod("notebook", NAMESPACE, {"app": "notebook"})  # a pod of the release's namespace, not the release's
# Where the controller of an Ingress class runs (the ci scenarios' classes) and Prometheus (the ServiceMonitors).
CONTROLLER_NAMESPACES = {"nginx": "ingress-nginx"}
PROMETHEUS = Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})

# (client, server, the server Service's port name, when): connections between the release's own pods.
IN_RELEASE = [
    ("server", "objectstore", "s3", "`objectStore.enabled`"),
    ("artifacts", "objectstore", "s3", "`objectStore.enabled`"),
    ("server", "backend", "postgresql", "bundled PostgreSQL"),
    ("gc", "backend", "postgresql", "`gc.enabled`, bundled PostgreSQL"),
    ("training", "server", "http", "`training.enabled`"),
    ("gc", "server", "http", "`gc.enabled`"),
    ("serving", "server", "http", "`serving.enabled`"),
    ("serving-follower", "server", "http", "`serving.enabled`"),
    ("test", "server", "http", "always"),
    ("test", "serving", "http", "`serving.enabled`"),
    ("training", "training", "rendezvous", "distributed training"),
]
NCCL_PORT = 41000  # NCCL/gloo pick their ports: any one stands for them


@dataclass(frozen=True, eq=False)
class Flow:
    """Clients `sources` dialling `port` of `target` (a Service's port for a pod behind one), named for the docs."""

    src: str
    dst: str
    port_doc: str
    when: str
    sources: tuple[Endpoint, ...]
    target: Endpoint
    port: int
    proto: str = "TCP"

    @property
    def id(self) -> str:
        return f"{self.src} -> {self.dst} {self.port}/{self.proto}".replace("`", "")


def merged_values(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge of values files: maps merge key by key, anything else is replaced."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            both_maps = isinstance(value, dict) and isinstance(out.get(key), dict)
            out[key] = merged_values(out[key], value) if both_maps else value
    return out


def url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def first_address(cidr: str) -> str:
    network = ipaddress.ip_network(cidr, strict=False)
    return str(network.network_address + (1 if network.num_addresses > 1 else 0))


def peer_stand_in(peer: Mapping[str, Any]) -> Endpoint:
    """A client that a NetworkPolicyPeer of the values admits (pod labels and namespace names only)."""
    if "ipBlock" in peer:
        return first_address(peer["ipBlock"]["cidr"])
    namespace = NAMESPACE
    if "namespaceSelector" in peer:
        wanted = (peer["namespaceSelector"] or {}).get("matchLabels") or {}
        assert set(wanted) <= {"kubernetes.io/metadata.name"}, f"no stand-in for the peer {peer}"
        namespace = wanted.get("kubernetes.io/metadata.name", "elsewhere")  # {}: any namespace
    assert not (peer.get("podSelector") or {}).get("matchExpressions"), f"no stand-in for the peer {peer}"
    labels = dict((peer.get("podSelector") or {}).get("matchLabels") or {}) or {"app": "client"}
    return Pod("peer", namespace, labels)


def _release_pods(cluster: Cluster) -> tuple[Pod, ...]:
    return tuple(p for p in cluster.pods if p.namespace == NAMESPACE and COMPONENT in p.labels)


@dataclass
class _Flows:
    """Collects flows, dropping those without clients: a component the render lacks needs nothing."""

    cluster: Cluster
    flows: list[Flow] = field(default_factory=list)

    def add(self, src: str, sources: Iterable[Endpoint], dst: str, target: Endpoint, port: int, *, doc: str = "",
            when: str = "", proto: str = "TCP") -> None:  # fmt: skip
        if sources := tuple(sources):
            self.flows.append(Flow(src, dst, doc or str(port), when, sources, target, port, proto))

    def of(self, component: str) -> tuple[str, list[Pod]]:
        """A component's docs name and pods, the first two arguments of add()."""
        return NAMES[component], self.cluster.component(component)

    def service_port(self, component: str, port_name: str) -> tuple[Pod, int] | None:
        """A pod of `component` and the port its Service calls `port_name`."""
        for pod in self.cluster.component(component):
            for svc in self.cluster.services:
                if svc.selector and selector_matches({"matchLabels": svc.selector}, pod.labels):
                    for sp in svc.ports:
                        if sp.name == port_name:
                            return pod, sp.port
        return None

    def to_service(self, src: str, sources: Iterable[Endpoint], component: str, port_name: str, **kw: Any) -> None:
        if found := self.service_port(component, port_name):
            self.add(src, sources, NAMES[component], *found, **kw)

    def frontends(self, docs: list[dict]) -> None:
        """What the rendered Ingresses, HTTPRoutes and ServiceMonitors send to the Services behind them."""
        for doc in docs:
            kind, spec = doc.get("kind"), doc.get("spec") or {}
            if kind == "Ingress":
                ns = CONTROLLER_NAMESPACES[spec["ingressClassName"]]
                client, name = Pod("ingress-controller", ns, {"app.kubernetes.io/name": ns}), "ingress controller"
                serving = doc["metadata"]["labels"].get(COMPONENT) == "serving"
                when = "`serving.ingress.enabled`" if serving else "`ingress.enabled`"
                refs = [(p["backend"]["service"]["name"], p["backend"]["service"]["port"])
                        for r in spec.get("rules") or [] for p in r["http"]["paths"]]  # fmt: skip
            elif kind == "HTTPRoute":
                ns = spec["parentRefs"][0].get("namespace", NAMESPACE)
                client, name = Pod("gateway", ns, {"app.kubernetes.io/name": "gateway"}), "Gateway"
                when = "`httpRoute.enabled`"
                refs = [(b["name"], {"number": b["port"]}) for r in spec["rules"] for b in r["backendRefs"]]
            elif kind == "ServiceMonitor":
                client, name, when = PROMETHEUS, "Prometheus", "`server.metrics.serviceMonitor.enabled`"
                services = [s for s in self.cluster.services if selector_matches(spec["selector"], s.labels)]
                refs = [(s.name, {"name": e["port"]}) for s in services for e in spec["endpoints"]]
            else:
                continue
            for svc_name, port in refs:
                svc = self.cluster.service(svc_name)
                [sp] = [p for p in svc.ports if p.name == port.get("name") or p.port == port.get("number")]
                target = self.cluster.backend(svc)
                oidc = ", `server.oidc.enabled`" if sp.name == "oidc" else ""  # the login port, not MLflow's
                self.add(name, [client], NAMES[target.labels[COMPONENT]], target, sp.port, when=when + oidc)


def needed(cluster: Cluster, values: Mapping[str, Any], docs: list[dict]) -> list[Flow]:
    """Every connection the release's pods make or must accept, in this render."""
    np, f = values["networkPolicy"], _Flows(cluster)
    for client, server, port_name, when in IN_RELEASE:
        f.to_service(*f.of(client), server, port_name, when=when)
        if port_name == "rendezvous" and (found := f.service_port(server, port_name)):
            f.add(*f.of(client), NAMES[server], found[0], NCCL_PORT, doc="any (NCCL, gloo)", when=when)
    everyone = _release_pods(cluster)
    dns = ((KUBE_DNS, "cluster DNS (kube-dns pods)"), (NODELOCAL_DNS, f"NodeLocal DNSCache {NODELOCAL_DNS}"))
    for (target, name), proto in itertools.product(dns, ("UDP", "TCP")):
        f.add("every pod of the release", everyone, name, target, 53, doc="53 (UDP, TCP)", when="always", proto=proto)
    api = first_address(np["apiServerCIDRs"][0]) if np.get("apiServerCIDRs") else API_SERVER
    api_clients = (("credentials", "the chart generates a credential"), ("serving-follower", "`serving.enabled`"),
                   ("objectstore-check", "`objectStore.startupCheck.enabled`"))  # fmt: skip
    for component, when in api_clients:
        for port in np["apiServerPorts"]:
            f.add(*f.of(component), "API server", api, int(port), doc="`networkPolicy.apiServerPorts`", when=when)
    oidc = values["server"]["oidc"]["enabled"]
    if oidc:
        port = np.get("issuerPort") or url_port(values["server"]["oidc"]["issuerUrl"])
        f.add(*f.of("server"), "OIDC provider", ISSUER, port, doc="the issuer URL's port", when="`server.oidc.enabled`")
    if (db := external_database_port(values)) is not None:
        for component in ("server", "gc"):
            f.add(*f.of(component), "external PostgreSQL/MySQL", DATABASE, db, doc="`backend.*.port`",
                  when="external database")  # fmt: skip
    if (storage := external_storage_port(values)) is not None:
        for component in ("server", "artifacts"):
            f.add(*f.of(component), "S3/GCS/Azure endpoint", STORAGE, storage, doc="the endpoint's port",
                  when="`objectStore.enabled: false`")  # fmt: skip
    if np.get("trainingEgress"):
        f.add(*f.of("training"), "internet (weights, datasets)", INTERNET, 443, when="`networkPolicy.trainingEgress`")
    for rule in np.get("extraEgress") or []:
        target = peer_stand_in(rule["to"][0]) if rule.get("to") else ANYWHERE
        for p in rule.get("ports") or []:
            f.add("every pod of the release", everyone, "`networkPolicy.extraEgress`", target, int(p["port"]),
                  doc="its ports", when="`networkPolicy.extraEgress`", proto=p.get("protocol", "TCP"))  # fmt: skip
    server_from = ("`networkPolicy.serverFrom` peers", map(peer_stand_in, np.get("serverFrom") or []))
    f.to_service(*server_from, "server", "oidc" if oidc else "http",
                 when="`server.oidc.enabled`" if oidc else "without `server.oidc`")  # fmt: skip
    f.to_service("`serving.from` peers", map(peer_stand_in, values["serving"].get("from") or []), "serving", "http",
                 when="`serving.enabled`")  # fmt: skip
    f.frontends(docs)
    return f.flows


def external_database_port(values: Mapping[str, Any]) -> int | None:
    backend = values["backend"]
    if backend["type"] == "mysql" or (backend["type"] == "postgresql" and not backend["postgresql"]["bundled"]):
        return int(values["networkPolicy"].get("databasePort") or backend[backend["type"]]["port"])
    return None


def external_storage_port(values: Mapping[str, Any]) -> int | None:
    if values["objectStore"]["enabled"]:
        return None
    artifacts = values["artifacts"]
    endpoint = artifacts["s3"].get("endpointUrl") if artifacts["type"] == "s3" else ""
    return int(values["networkPolicy"].get("s3Port") or (url_port(endpoint) if endpoint else 443))


def refused(cluster: Cluster, values: Mapping[str, Any]) -> list[Flow]:
    """Connections the policies must refuse (none without policies: then everything is open by choice)."""
    if not cluster.policies:
        return []
    f = _Flows(cluster)
    stranger = ("pod of the namespace, not the release's", [STRANGER])
    release_labels = dict(cluster.component("server")[0].labels)
    lookalike = ("pod of another namespace", [Pod("lookalike", "elsewhere", release_labels)])
    for component, port_name in (("backend", "postgresql"), ("objectstore", "s3"), ("serving", "http")):
        f.to_service(*lookalike, component, port_name)
        if component != "serving":  # serving.from's default admits the release's namespace
            f.to_service(*stranger, component, port_name)
    f.to_service(*f.of("training"), "backend", "postgresql")
    f.to_service(*f.of("training"), "objectstore", "s3")  # item 7: artifacts go through the server's proxy
    if values["server"]["oidc"]["enabled"]:
        # MLflow's own port has no login then: only the chart's tracking clients, not serverFrom, not its other pods
        f.to_service(*stranger, "server", "http")
        peers = map(peer_stand_in, values["networkPolicy"]["serverFrom"] or [])
        f.to_service("`networkPolicy.serverFrom` peers", peers, "server", "http")
        for component in ("artifacts", "credentials", "objectstore", "backend", "objectstore-check"):
            f.to_service(*f.of(component), "server", "http")
    # DNS egress names its destinations, the external database's and storage's rules their clients (issue 34 B9).
    everyone = _release_pods(cluster)
    f.add("every pod of the release", everyone, f"a resolver at {PUBLIC_DNS}", PUBLIC_DNS, 53, proto="UDP")
    if (db := external_database_port(values)) is not None:
        f.add(*f.of("training"), "the external database's port", DATABASE, db)
    if (storage := external_storage_port(values)) is not None:
        # the helm test pods, not training: the training's own egress (networkPolicy.trainingEgress) opens 443 anywhere
        f.add(*f.of("test"), "any address on the storage port", ANYWHERE, storage)
    return f.flows


def table(renders: Iterable[tuple[Cluster, list[Flow]]], fullname: str) -> list[str]:
    """docs/chart.md's rows: each needed flow of the renders with policies, and the policies admitting it in all of them
    (what admits it by coincidence in one render, e.g. an S3 port that is also an API server port, drops out)."""
    rows: dict[tuple[str, str, str, str], set[str]] = {}
    for cluster, flows in renders:
        if not cluster.policies:
            continue
        for f in flows:
            names = {n for s in f.sources for n in cluster.verdict(s, f.target, f.port, f.proto).policies}
            key = (f.src, f.dst, f.port_doc, f.when)
            rows[key] = rows[key] & names if key in rows else names
    relative = lambda n: "`<fullname>" + n[len(fullname):] + "`" if n.startswith(fullname) else f"`{n}`"  # noqa: E731
    # The release's pods as destinations first (in NAMES' order), then what lies outside; the release's clients first.
    ours = list(NAMES.values())
    rank = lambda name: (ours.index(name) if name in ours else len(ours), name.strip("`").lower())  # noqa: E731
    return ["| From | To | Port | Admitted by | When |", "|---|---|---|---|---|"] + [
        f"| {src} | {dst} | {port} | {', '.join(relative(n) for n in sorted(names)) or 'no policy'} | {when} |"
        for (src, dst, port, when), names in sorted(rows.items(), key=lambda r: (rank(r[0][1]), rank(r[0][0]), r[0]))
    ]
