"""netpol.py applies NetworkPolicies as an enforcing CNI does (named ports, endPort, ipBlock except, selectors by
namespace): the proof that test_network_flows.py can see a refusal."""

from __future__ import annotations

from netpol import Cluster, Pod

MANIFESTS = """
kind: Deployment
metadata: {name: db}
spec:
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, ports: [{name: sql, containerPort: 6432}]}]
---
kind: Service
metadata: {name: db}
spec:
  selector: {app: db}
  ports: [{name: sql, port: 5432, targetPort: sql}]
---
kind: Pod
metadata: {name: app, labels: {app: app}}
spec: {containers: [{name: app}]}
---
kind: NetworkPolicy
metadata: {name: db}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - ports: [{port: sql}]
      from: [{podSelector: {matchLabels: {app: app}}}]
---
kind: NetworkPolicy
metadata: {name: app-egress}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [app]}]}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {}}]
    - ports: [{port: 53, protocol: UDP}]
    - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]
      ports: [{port: 8000, endPort: 8100}]
"""


def test_enforcing_cni_semantics() -> None:
    c = Cluster.from_manifests(MANIFESTS, "ns")
    db, app = (next(p for p in c.pods if p.name == name) for name in ("db", "app"))
    assert c.translate(db, 5432, "TCP") == 6432, "the Service's named targetPort"
    assert c.verdict(app, db, 5432).policies == ("app-egress", "db")
    assert not c.allowed(app, db, 6000), "a port the named port is not"
    elsewhere = Pod("app", "other", dict(app.labels))
    assert not c.allowed(elsewhere, db, 5432), "a podSelector peer alone is the policy's namespace only"
    assert c.allowed(db, app, 80), "no policy on either side: open"
    assert c.allowed(app, "8.8.8.8", 53, "UDP") and not c.allowed(app, "8.8.8.8", 53), "protocol defaults to TCP"
    assert c.allowed(app, "10.2.3.4", 8050) and not c.allowed(app, "10.2.3.4", 8101), "endPort"
    assert not c.allowed(app, "10.1.3.4", 8050), "ipBlock except"
    assert not c.allowed(app, "10.2.3.4", 5432), "a podSelector never matches an address"
