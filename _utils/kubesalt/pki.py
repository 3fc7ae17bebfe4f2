"""
kubesalt's PKI policy, as pure functions of the cluster settings: which certificates a minion id may hold
(:py:func:`entitlements`), where every PKI file lives (:py:func:`layout`), and the cluster secrets (the
service-account key, the EncryptionConfiguration).

The policy reads roles and addresses from ``k8s:nodes`` only (master-side pillar, in ``config``, the output of
``k8s.settings``), never from grains, which a minion sets for itself. The CA minion applies it to the minion id the
salt-master stamps on a request (``__pub_id``); what a CSR asks for is never used.

- **Admin identity**: ``admin`` is ``CN=kubernetes-admin, O=system:masters``, the pre-1.29 kubeadm ``admin.conf``.
  Kubernetes 1.29 split this into ``kubeadm:cluster-admins`` (bound by a ClusterRoleBinding) and a break-glass
  ``super-admin.conf`` with ``system:masters``. kubesalt supports releases back to 1.20 and creates no RBAC objects
  before the API server is up, so the admin credential is the ``system:masters`` one, held by the CA minion only.
- **apiserver-kubelet-client** is ``CN=kube-apiserver-kubelet-client, O=kubesalt:apiserver-kubelet-client``; the
  cluster objects bind that group to the ``system:kubelet-api-admin`` ClusterRole (logs, exec, port-forward).
- ``flannel-etcd-client`` is issued only in network mode ``flannel``: etcd without its own auth gives any client
  certificate from the etcd CA full access to all keys. In ``routes`` mode no worker needs etcd access.
"""

import base64
import ipaddress
import secrets as _secrets

import yaml
from salt.exceptions import SaltInvocationError

from kubesalt import data, x509

# CA name -> default common name (kubeadm's).
CAS = {"kubernetes-ca": "kubernetes", "etcd-ca": "etcd-ca", "front-proxy-ca": "front-proxy-ca"}

# Every identity the CA knows, in a stable order, with the CA that issues it.
IDENTITIES = {
    "apiserver": "kubernetes-ca",
    "apiserver-kubelet-client": "kubernetes-ca",
    "apiserver-etcd-client": "etcd-ca",
    "front-proxy-client": "front-proxy-ca",
    "kube-controller-manager": "kubernetes-ca",
    "kube-scheduler": "kubernetes-ca",
    "admin": "kubernetes-ca",
    "kubelet": "kubernetes-ca",
    "kube-proxy": "kubernetes-ca",
    "flannel-etcd-client": "etcd-ca",
    "etcd-server": "etcd-ca",
    "etcd-peer": "etcd-ca",
    "etcd-healthcheck-client": "etcd-ca",
}

# Cluster secrets held on the CA minion: name -> file name (in ca_dir on the CA minion, pki_dir on masters).
SECRETS = {"service-account": "service-account.key", "encryption-config": "encryption-config.yaml"}


def identities():
    """
    The certificate identities kubesalt knows, in a stable order.
    """
    return list(IDENTITIES)


def _cluster(config):
    cluster = (config or {}).get("cluster")
    if not isinstance(cluster, dict) or "masters" not in cluster:
        raise SaltInvocationError(
            "config: no derived 'cluster' facts; pass the settings produced by k8s.settings (k8s/map.jinja)"
        )
    return cluster


def _node_names(minion_id, node):
    return data.dedupe([str(minion_id)] + [str(n) for n in data.as_list(node.get("names"))])


def _node_ips(node):
    return [str(node["ip"])] if node.get("ip") else []


def _split_sans(values):
    dns, ips = [], []
    for value in data.as_list(values):
        try:
            ips.append(str(ipaddress.ip_address(str(value))))
        except ValueError:
            dns.append(str(value))
    return dns, ips


def _ent(identity, cn, o=(), dns=(), ips=(), usages=("client",)):
    return {
        "ca": IDENTITIES[identity],
        "cn": cn,
        "o": list(o),
        "dns": data.dedupe(dns),
        "ips": data.dedupe(ips),
        "usages": list(usages),
    }


def entitlements(config, minion_id):
    """
    Every certificate ``minion_id`` may hold: ``{identity: {ca, cn, o, dns, ips, usages}}``. Computed only from
    the roles and addresses in ``k8s:nodes`` (``config`` is the output of ``k8s.settings``), never from grains.

    - worker: its own ``kubelet`` and ``kube-proxy`` (and ``flannel-etcd-client`` in network mode flannel);
    - master: ``apiserver``, ``apiserver-kubelet-client``, ``apiserver-etcd-client``, ``front-proxy-client``,
      ``kube-controller-manager``, ``kube-scheduler``, ``admin``, and its own ``kubelet``/``kube-proxy``
      (and ``flannel-etcd-client`` in network mode flannel);
    - etcd: its own ``etcd-server``, ``etcd-peer`` and ``etcd-healthcheck-client``.

    A minion that is not in ``k8s:nodes`` gets nothing.
    """
    cluster = _cluster(config)
    nodes = config.get("nodes") or {}
    minion_id = str(minion_id)
    if minion_id not in nodes or not isinstance(nodes[minion_id], dict):
        return {}
    node = nodes[minion_id]
    names, ips = _node_names(minion_id, node), _node_ips(node)
    local = ["localhost"]
    loopback = ["127.0.0.1"]
    flannel = (config.get("network") or {}).get("mode") == "flannel"
    ents = {}

    if minion_id in cluster.get("masters", []):
        domain = str(config.get("cluster_domain") or "cluster.local")
        extra_dns, extra_ips = _split_sans((config.get("pki") or {}).get("apiserver_extra_sans"))
        master_dns, master_ips = [], []
        for master in cluster["masters"]:
            master_dns += _node_names(master, nodes.get(master) or {})
            master_ips += _node_ips(nodes.get(master) or {})
        service_ip = [cluster["api_service_ip"]] if cluster.get("api_service_ip") else []
        ents["apiserver"] = _ent(
            "apiserver",
            "kube-apiserver",
            dns=master_dns
            + ["kubernetes", "kubernetes.default", "kubernetes.default.svc", f"kubernetes.default.svc.{domain}"]
            + local
            + extra_dns,
            ips=master_ips + service_ip + loopback + extra_ips,
            usages=("server",),
        )
        ents["apiserver-kubelet-client"] = _ent(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", o=[data.APISERVER_KUBELET_CLIENT_GROUP]
        )
        ents["apiserver-etcd-client"] = _ent("apiserver-etcd-client", "kube-apiserver-etcd-client")
        ents["front-proxy-client"] = _ent("front-proxy-client", "front-proxy-client")
        for component in ("kube-controller-manager", "kube-scheduler"):
            ents[component] = _ent(
                component,
                f"system:{component}",
                o=[f"system:{component}"],
                dns=names + local,
                ips=ips + loopback,
                usages=("server", "client"),
            )
        ents["admin"] = _ent("admin", "kubernetes-admin", o=["system:masters"])

    if minion_id in cluster.get("masters", []) or minion_id in cluster.get("workers", []):
        ents["kubelet"] = _ent(
            "kubelet", f"system:node:{minion_id}", o=["system:nodes"], dns=names, ips=ips, usages=("server", "client")
        )
        ents["kube-proxy"] = _ent("kube-proxy", "system:kube-proxy", o=["system:node-proxier"])
        if flannel:
            ents["flannel-etcd-client"] = _ent("flannel-etcd-client", "flannel-etcd-client")

    if minion_id in cluster.get("etcd_members", []):
        for identity in ("etcd-server", "etcd-peer"):
            ents[identity] = _ent(
                identity, minion_id, dns=names + local, ips=ips + loopback, usages=("server", "client")
            )
        ents["etcd-healthcheck-client"] = _ent("etcd-healthcheck-client", "kube-etcd-healthcheck-client")

    return {identity: ents[identity] for identity in IDENTITIES if identity in ents}


def layout(config):
    """
    Where kubesalt keeps PKI files, from ``k8s:paths`` (fs_root already applied by ``k8s.settings``):

    - ``cas``: ``{ca: {cert, key, common_name, bundle}}``; ``cert``/``key`` in ``ca_dir`` on the CA minion only,
      ``bundle`` the copy every node gets in ``pki_dir``;
    - ``certificates``: ``{identity: {cert, key, ca_file}}`` in ``pki_dir``;
    - ``secrets``: ``{secret: {source, path}}``: ``source`` in ``ca_dir`` on the CA minion, ``path`` on masters;
    - ``public_keys``: ``{secret: path}``: the public half of a key secret, on masters (kube-apiserver verifies
      service-account tokens with it).
    """
    paths = (config or {}).get("paths") or {}
    pki, ca_dir = paths.get("pki_dir"), paths.get("ca_dir")
    if not pki or not ca_dir:
        raise SaltInvocationError("config: k8s:paths:pki_dir and k8s:paths:ca_dir must be set")
    return {
        "cas": {
            ca: {
                "cert": f"{ca_dir}/{ca}.crt",
                "key": f"{ca_dir}/{ca}.key",
                "common_name": cn,
                "bundle": f"{pki}/{ca}.crt",
            }
            for ca, cn in CAS.items()
        },
        "certificates": {
            identity: {"cert": f"{pki}/{identity}.crt", "key": f"{pki}/{identity}.key", "ca_file": f"{pki}/{ca}.crt"}
            for identity, ca in IDENTITIES.items()
        },
        "secrets": {name: {"source": f"{ca_dir}/{fname}", "path": f"{pki}/{fname}"} for name, fname in SECRETS.items()},
        "public_keys": {"service-account": f"{pki}/service-account.pub"},
    }


def generate_secret(name, key_type="ecdsa-p256"):
    """
    Generate the value of a cluster secret: ``service-account`` (the service-account token signing key, PEM of
    ``key_type``) or ``encryption-config`` (an EncryptionConfiguration YAML with a fresh 32-byte secretbox key for
    Secrets, falling back to identity for reading data written before encryption was enabled).
    """
    if name == "service-account":
        return x509.generate_private_key(key_type)
    if name == "encryption-config":
        config = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "EncryptionConfiguration",
            "resources": [
                {
                    "resources": ["secrets"],
                    "providers": [
                        {
                            "secretbox": {
                                "keys": [
                                    {"name": "key1", "secret": base64.b64encode(_secrets.token_bytes(32)).decode()}
                                ]
                            }
                        },
                        {"identity": {}},
                    ],
                }
            ],
        }
        return yaml.safe_dump(config, default_flow_style=False, sort_keys=False)
    raise SaltInvocationError(f"secret: '{name}' is not a cluster secret; known: {', '.join(SECRETS)}")
