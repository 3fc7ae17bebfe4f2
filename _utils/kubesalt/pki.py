"""
kubesalt's PKI policy, as pure functions of the cluster settings: which certificates a minion id may hold
(:py:func:`entitlements`), where every PKI file lives (:py:func:`layout`), and the cluster secrets (the
service-account key, the EncryptionConfiguration).

The policy reads roles and addresses from ``k8s:nodes`` only (master-side pillar, in ``config``, the output of
``k8s.settings``), never from grains, which a minion sets for itself. The CA minion applies it to the minion id the
salt-master stamps on a request (``__pub_id``); what a CSR asks for is never used.

- **apiserver-kubelet-client** is ``CN=kube-apiserver-kubelet-client, O=kubesalt:apiserver-kubelet-client``; the
  cluster objects bind that group to the ``system:kubelet-api-admin`` ClusterRole (logs, exec, port-forward).
- **Who etcd accepts**: only etcd members and masters hold a certificate of the etcd CA (etcd without its own auth
  gives any client certificate of its CA every key, ``/registry`` included). flanneld (network mode ``flannel``)
  uses the Kubernetes API instead (its kube subnet manager, with the ``flannel`` identity and an RBAC role limited
  to Node objects), so a worker holds no etcd credential in either network mode.
- **Admin credentials** are the CA minion's only. With ``k8s:pki:super_admin`` (Kubernetes >= 1.29, as kubeadm
  does) ``admin`` belongs to ``kubesalt:cluster-admins``, bound to ``cluster-admin`` by the cluster objects, and
  the break-glass ``super-admin`` carries ``system:masters``; without it (older releases) ``admin`` is
  ``system:masters``.
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
    "super-admin": "kubernetes-ca",
    "kubelet": "kubernetes-ca",
    "kube-proxy": "kubernetes-ca",
    "flannel": "kubernetes-ca",
    "etcd-server": "etcd-ca",
    "etcd-peer": "etcd-ca",
    "etcd-healthcheck-client": "etcd-ca",
}

# The group of the admin credential when a super-admin exists (k8s:pki:super_admin), bound to cluster-admin.
ADMIN_GROUP = "kubesalt:cluster-admins"
# flanneld's user: the cluster objects give it exactly what its kube subnet manager needs.
FLANNEL_USER = "kubesalt:flannel"

# Cluster secrets held on the CA minion: name -> file name (in ca_dir on the CA minion, pki_dir on masters).
SECRETS = {"service-account": "service-account.key", "encryption-config": "encryption-config.yaml"}
# The mode of every PKI file kubesalt writes -- certificates, keys, CA bundles, cluster secrets (every reader is
# root; CIS 1.1.20, 1.1.21, 4.1.7) -- and of the CA directory that holds the CA keys.
FILE_MODE = 0o600
CA_DIR_MODE = 0o700


def identities():
    """
    The certificate identities kubesalt knows, in a stable order.
    """
    return list(IDENTITIES)


def cluster_facts(config):
    """The derived ``cluster`` facts of ``config`` (k8s.settings' output); refused when they are missing."""
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

    - worker: its own ``kubelet`` and ``kube-proxy`` (and ``flannel`` in network mode flannel);
    - master: ``apiserver``, ``apiserver-kubelet-client``, ``apiserver-etcd-client``, ``front-proxy-client``,
      ``kube-controller-manager``, ``kube-scheduler``, and its own ``kubelet``/``kube-proxy`` (and ``flannel``);
    - the CA minion (a master): also ``admin``, and ``super-admin`` with ``k8s:pki:super_admin``;
    - etcd: its own ``etcd-server``, ``etcd-peer`` and ``etcd-healthcheck-client``.

    A minion that is not in ``k8s:nodes`` gets nothing.
    """
    cluster = cluster_facts(config)
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
        if minion_id == cluster["ca_minion"]:
            super_admin = bool((config.get("pki") or {}).get("super_admin"))
            ents["admin"] = _ent("admin", "kubernetes-admin", o=[ADMIN_GROUP if super_admin else "system:masters"])
            if super_admin:
                ents["super-admin"] = _ent("super-admin", "kubernetes-super-admin", o=["system:masters"])

    if minion_id in cluster.get("masters", []) or minion_id in cluster.get("workers", []):
        ents["kubelet"] = _ent(
            "kubelet", f"system:node:{minion_id}", o=["system:nodes"], dns=names, ips=ips, usages=("server", "client")
        )
        ents["kube-proxy"] = _ent("kube-proxy", "system:kube-proxy", o=["system:node-proxier"])
        if flannel:
            ents["flannel"] = _ent("flannel", FLANNEL_USER)

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
