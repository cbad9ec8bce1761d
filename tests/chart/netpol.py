"""NetworkPolicy semantics of an enforcing CNI (Calico, Cilium, OVN), evaluated on rendered manifests.

A pod selected by a policy of type Ingress (Egress) is default-deny in that direction; a connection passes when the
source's egress policies admit it (or none selects the source) and the destination's ingress policies admit it (or
none selects it). Policies see the destination pod's own port, after a Service's translation (named ports resolved).
Pod and namespace selectors match pods only; ipBlock peers match addresses only (the pods here have none), so an
address stands for whatever is not a pod: a node, a load balancer, the API server, the internet.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Union

import yaml

# Where each workload kind keeps its pod template.
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Pod": (),
}
NAMESPACE_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class ContainerPort:
    name: str | None
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True, eq=False)
class Pod:
    name: str  # the workload's name (a Deployment's pods all look alike to a policy)
    namespace: str
    labels: Mapping[str, str]
    ports: tuple[ContainerPort, ...] = ()

    def __repr__(self) -> str:
        return f"{self.namespace}/{self.name}"


Address = str  # an IP address outside any pod
Endpoint = Union[Pod, Address]


@dataclass(frozen=True)
class ServicePort:
    name: str | None
    port: int
    target: int | str
    protocol: str = "TCP"


@dataclass(frozen=True, eq=False)
class Service:
    name: str
    namespace: str
    labels: Mapping[str, str]
    selector: Mapping[str, str]
    headless: bool  # clients reach the pods' own addresses and ports: no translation
    ports: tuple[ServicePort, ...]


@dataclass(frozen=True, eq=False)
class Policy:
    name: str
    namespace: str
    spec: Mapping[str, Any]

    @property
    def types(self) -> set[str]:
        # The API server defaults policyTypes: Ingress always, Egress when the policy has egress rules.
        return set(self.spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in self.spec else [])])

    def selects(self, pod: Pod) -> bool:
        return pod.namespace == self.namespace and selector_matches(self.spec.get("podSelector") or {}, pod.labels)


@dataclass(frozen=True)
class Verdict:
    """The policies admitting a connection on each side; None where no policy selects that side's pod (open)."""

    egress: tuple[str, ...] | None
    ingress: tuple[str, ...] | None

    @property
    def allowed(self) -> bool:
        return self.egress != () and self.ingress != ()

    @property
    def policies(self) -> tuple[str, ...]:
        return (*(self.egress or ()), *(self.ingress or ()))


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist); {} matches everything."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": key not in labels or labels[key] not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]  # fmt: skip
        if not ok:
            return False
    return True


def _in_block(address: Address, block: Mapping[str, Any]) -> bool:
    ip = ipaddress.ip_address(address)
    inside = lambda cidr: ip.version == ipaddress.ip_network(cidr, strict=False).version and \
        ip in ipaddress.ip_network(cidr, strict=False)  # noqa: E731 fmt: skip
    return inside(block["cidr"]) and not any(inside(c) for c in block.get("except") or [])


def peer_matches(peer: Mapping[str, Any], policy_ns: str, endpoint: Endpoint) -> bool:
    if "ipBlock" in peer:
        return isinstance(endpoint, str) and _in_block(endpoint, peer["ipBlock"])
    if isinstance(endpoint, str):
        return False  # selectors never match nodes, load balancers or anything outside a pod
    if "namespaceSelector" in peer:
        in_ns = selector_matches(peer["namespaceSelector"] or {}, {NAMESPACE_LABEL: endpoint.namespace})
    else:
        in_ns = endpoint.namespace == policy_ns  # a podSelector alone: the policy's own namespace
    return in_ns and selector_matches(peer.get("podSelector") or {}, endpoint.labels)


def port_matches(rule_ports: Iterable[Mapping[str, Any]] | None, dst: Endpoint, port: int, proto: str) -> bool:
    """`port` is the destination's own; a named port matches the destination pod's container port of that name."""
    rule_ports = list(rule_ports or [])
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != proto:
            continue
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, str):
            named = dst.ports if isinstance(dst, Pod) else ()
            if any(c.name == want and c.port == port and c.protocol == proto for c in named):
                return True
        elif want <= port <= p.get("endPort", want):
            return True
    return False


@dataclass
class Cluster:
    pods: list[Pod] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    policies: list[Policy] = field(default_factory=list)

    @classmethod
    def from_manifests(cls, text: str, namespace: str) -> "Cluster":
        cluster = cls()
        for doc in yaml.safe_load_all(text):
            if doc:
                cluster._add(doc, doc.get("metadata", {}).get("namespace") or namespace)
        return cluster

    def _add(self, doc: Mapping[str, Any], ns: str) -> None:
        kind, name = doc.get("kind"), doc["metadata"]["name"]
        if kind in TEMPLATE_PATHS:
            template: Any = doc
            for key in TEMPLATE_PATHS[kind]:
                template = template[key]
            spec = template.get("spec") or {}
            ports = tuple(ContainerPort(p.get("name"), int(p["containerPort"]), p.get("protocol", "TCP"))
                          for c in [*spec.get("initContainers", []), *spec.get("containers", [])]
                          for p in c.get("ports") or [])  # fmt: skip
            self.pods.append(Pod(name, ns, dict(template["metadata"].get("labels") or {}), ports))
        elif kind == "Service":
            spec = doc["spec"]
            ports = tuple(ServicePort(p.get("name"), int(p["port"]), p.get("targetPort", p["port"]),
                                      p.get("protocol", "TCP")) for p in spec.get("ports") or [])  # fmt: skip
            labels, selector = dict(doc["metadata"].get("labels") or {}), dict(spec.get("selector") or {})
            self.services.append(Service(name, ns, labels, selector, spec.get("clusterIP") == "None", ports))
        elif kind == "NetworkPolicy":
            self.policies.append(Policy(name, ns, doc["spec"]))

    def component(self, component: str) -> list[Pod]:
        return [p for p in self.pods if p.labels.get("app.kubernetes.io/component") == component]

    def service(self, name: str) -> Service:
        [service] = [s for s in self.services if s.name == name]
        return service

    def backend(self, service: Service) -> Pod:
        """The first pod a Service sends to."""
        return next(p for p in self.pods if p.namespace == service.namespace and service.selector
                    and selector_matches({"matchLabels": service.selector}, p.labels))  # fmt: skip

    def translate(self, dst: Endpoint, port: int, proto: str) -> int:
        """The port a policy sees when a client dials `port` of the (non-headless) Service in front of `dst`."""
        if isinstance(dst, str):
            return port
        for svc in self.services:
            if svc.headless or svc.namespace != dst.namespace or not svc.selector \
                    or not selector_matches({"matchLabels": svc.selector}, dst.labels):  # fmt: skip
                continue
            for sp in svc.ports:
                if sp.port == port and sp.protocol == proto:
                    if isinstance(sp.target, int):
                        return sp.target
                    return next(c.port for c in dst.ports if c.name == sp.target and c.protocol == proto)
        return port

    def verdict(self, src: Endpoint, dst: Endpoint, port: int, proto: str = "TCP") -> Verdict:
        """Which policies admit `src` dialling `port`/`proto` of `dst` (a Service's port for a pod behind one)."""
        port = self.translate(dst, port, proto)

        def side(selected: Endpoint, direction: str, peer: Endpoint) -> tuple[str, ...] | None:
            if isinstance(selected, str):
                return None  # nothing outside a pod is selected by a policy
            policies = [p for p in self.policies if direction.capitalize() in p.types and p.selects(selected)]
            if not policies:
                return None
            peers_key = "to" if direction == "egress" else "from"
            return tuple(p.name for p in policies if any(
                port_matches(rule.get("ports"), dst, port, proto)
                and (not rule.get(peers_key) or any(peer_matches(x, p.namespace, peer) for x in rule[peers_key]))
                for rule in p.spec.get(direction) or []))  # fmt: skip

        return Verdict(side(src, "egress", dst), side(dst, "ingress", src))

    def allowed(self, src: Endpoint, dst: Endpoint, port: int, proto: str = "TCP") -> bool:
        return self.verdict(src, dst, port, proto).allowed
