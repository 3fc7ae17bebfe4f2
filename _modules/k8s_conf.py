"""
kubesalt component configuration, built as data.

Every file and command line kubesalt writes for a Kubernetes component comes from here: kubeconfigs, the
KubeletConfiguration, KubeProxyConfiguration and KubeSchedulerConfiguration objects, containerd's ``config.toml``,
CNI network configurations, the pod routes of network mode ``routes``, and the flag lists of every systemd unit.
The formulas only loop over what these functions return, so the SLS files stay thin and the logic is unit-tested
without a minion.

Each ``<component>(config, minion_id)`` function returns a *component spec*::

    {"unit": "kube-apiserver", "description": "...", "exec": "/usr/local/bin/kube-apiserver",
     "flags": ["--flag=value", ...], "files": {path: {"contents": text, "mode": "0600"}},
     "certificates": [identities the service must restart for], "secrets": [...], "after": [...],
     "requires": [...], "service": {extra [Service] settings}, "reload": True if a file or certificate change
     reloads instead of restarting}

``config`` is the resolved settings mapping from ``k8s.settings`` (``k8s`` in ``k8s/map.jinja``). Paths in it already
carry ``fs_root``; sockets and kernel paths never do.
"""

import json
import logging
import os
import re

import salt.utils.yaml
from salt.exceptions import SaltInvocationError

from kubesalt import data, pki, topology

log = logging.getLogger(__name__)

__virtualname__ = "k8s_conf"

CONTAINERD_SOCKET = "unix:///run/containerd/containerd.sock"
FLANNEL_SUBNET_FILE = "/run/flannel/subnet.env"
KUBECONFIGS = {
    # identity -> kubeconfig file name in k8s:paths:config_dir
    "admin": "admin.conf",
    "super-admin": "super-admin.conf",
    "kube-controller-manager": "controller-manager.conf",
    "kube-scheduler": "scheduler.conf",
    "kubelet": "kubelet.conf",
    "kube-proxy": "kube-proxy.conf",
    "flannel": "flannel.conf",
}
# The user name in a kubeconfig, where it is not the identity itself (kubeadm's names).
KUBECONFIG_USERS = {"admin": "kubernetes-admin", "super-admin": "kubernetes-super-admin"}


def __virtual__():
    return __virtualname__


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------
def _node(config, minion_id):
    node = (config.get("nodes") or {}).get(minion_id)
    if not isinstance(node, dict):
        raise SaltInvocationError(f"k8s:nodes:{minion_id}: '{minion_id}' is not in the inventory")
    return node


def _require_role(config, minion_id, role):
    _node(config, minion_id)
    cluster = config["cluster"]
    members = {"master": cluster["masters"], "node": cluster["masters"] + cluster["workers"]}[role]
    if minion_id not in members:
        raise SaltInvocationError(f"k8s:nodes:{minion_id}: '{minion_id}' has no {role} role in the inventory")


def _cert(config, identity):
    """(certificate, key) paths of ``identity`` on a node (``kubesalt.pki.layout``)."""
    files = pki.layout(config)["certificates"][identity]
    return files["cert"], files["key"]


def _ca(config, ca):
    """The bundle of CA ``ca`` every node holds."""
    return pki.layout(config)["cas"][ca]["bundle"]


def _secret(config, name):
    """Where a master holds cluster secret ``name``."""
    return pki.layout(config)["secrets"][name]["path"]


def _yaml(data):
    return salt.utils.yaml.safe_dump(data, default_flow_style=False, sort_keys=False)


def _json(data):
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def _bin(config, name):
    return f"{config['paths']['bin_dir']}/{name}"


def _spec(
    unit,
    description,
    exec_,
    flags,
    files=None,
    certificates=(),
    secrets=(),
    after=(),
    requires=(),
    service=None,
    **extra,
):
    """
    A component spec (the module docstring lists its keys): the unit ``unit`` runs ``exec_`` with ``flags``, writes
    ``files``, restarts for ``certificates`` and ``secrets``, and restarts on failure unless ``service`` says
    otherwise. ``extra`` adds keys (``before``, ``public_keys``, ``commands``, ``documentation``, ...).
    """
    return {
        "unit": unit,
        "description": description,
        "exec": exec_,
        "flags": flags,
        "files": files or {},
        "certificates": list(certificates),
        "secrets": list(secrets),
        "after": list(after),
        "requires": list(requires),
        "service": service or {"Restart": "on-failure", "RestartSec": 5},
        **extra,
    }


def _flags(spec):
    """Turn an ordered ``{flag: value}`` mapping into ``--flag=value`` strings (None values are dropped)."""
    out = []
    for flag, value in spec.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        out.append(f"--{flag}={value}")
    return out


def _extra(config, section):
    sect = config.get(section) or {}
    return [str(f) for f in (sect.get("version_flags") or [])] + [str(f) for f in (sect.get("extra_flags") or [])]


def to_toml(data, _prefix=()):
    """
    Serialize nested mappings of strings, numbers, booleans and lists of scalars as TOML (what containerd reads).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.to_toml '{"version": 2}'
    """
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, key)}")
    out = []
    if lines:
        if _prefix:
            out.append("[" + ".".join(_toml_key(k) for k in _prefix) + "]")
        out.extend(lines)
        out.append("")
    for key, value in tables:
        out.append(to_toml(value, _prefix + (key,)))
    return "\n".join(part for part in out if part is not None).replace("\n\n\n", "\n\n")


def _toml_key(key):
    key = str(key)
    return key if re.match(r"^[A-Za-z0-9_-]+$", key) else json.dumps(key)


def _toml_value(value, key):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, key) for v in value) + "]"
    raise SaltInvocationError(f"to_toml: value of '{key}' has unsupported type {type(value).__name__}")


# --------------------------------------------------------------------------------------------------------------------
# Kubeconfigs
# --------------------------------------------------------------------------------------------------------------------
def kubeconfig(config, identity, server):
    """
    A kubeconfig (as data) for ``identity``'s client certificate against ``server``, trusting the cluster CA.
    Certificates are referenced by path, never embedded: the key stays in one file, mode 0600.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.kubeconfig "$(salt-call --out=json k8s.config | jq -c .local)" admin https://10.240.0.11:6443
    """
    name = str(config["cluster_name"])
    user = KUBECONFIG_USERS.get(identity, identity)
    cert, key = _cert(config, identity)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority": _ca(config, "kubernetes-ca")}}
        ],
        "users": [{"name": user, "user": {"client-certificate": cert, "client-key": key}}],
        "contexts": [{"name": f"{user}@{name}", "context": {"cluster": name, "user": user}}],
        "current-context": f"{user}@{name}",
        "preferences": {},
    }


def kubeconfig_path(config, identity):
    """
    Where the kubeconfig of ``identity`` lives (``k8s:paths:config_dir``).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.kubeconfig_path "$(salt-call --out=json k8s.config | jq -c .local)" kubelet
    """
    return f"{config['paths']['config_dir']}/{KUBECONFIGS[identity]}"


def _kubeconfig_file(config, identity, server):
    return {
        kubeconfig_path(config, identity): {"contents": _yaml(kubeconfig(config, identity, server)), "mode": "0600"}
    }


def admin(config, minion_id):
    """
    The admin kubeconfig files of the CA minion (``<config_dir>/admin.conf`` and every ``k8s:admin:kubeconfig_paths``
    entry, and with ``k8s:pki:super_admin`` the break-glass ``<config_dir>/super-admin.conf``), or ``{}`` on any other
    node: the admin certificates exist only there.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.admin "$(salt-call --out=json k8s.config | jq -c .local)" master01
    """
    if minion_id != config["cluster"]["ca_minion"]:
        return {}
    server = topology.admin_api_url(config, minion_id)
    text = _yaml(kubeconfig(config, "admin", server))
    paths = [kubeconfig_path(config, "admin")] + [
        str(p) for p in ((config.get("admin") or {}).get("kubeconfig_paths") or [])
    ]
    files = {path: {"contents": text, "mode": "0600"} for path in paths}
    if config["pki"]["super_admin"]:
        files.update(_kubeconfig_file(config, "super-admin", server))
    return files


# --------------------------------------------------------------------------------------------------------------------
# etcd
# --------------------------------------------------------------------------------------------------------------------
# systemd's credentials directory of a system unit is CREDENTIALS_DIR/<unit> (``%d``; systemd >= 247).
CREDENTIALS_DIR = "/run/credentials"


def etcd_user(config):
    """
    The user etcd runs as (``k8s:etcd:user``), or None for root.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.etcd_user "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    user = config["etcd"]["user"]
    return user if user not in ("", "root") else None


def etcd_first_start_file(config):
    """
    The environment file that holds an etcd member's first-start settings (``ETCD_INITIAL_CLUSTER``,
    ``ETCD_INITIAL_CLUSTER_STATE``), read by its unit.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.etcd_first_start_file "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    return f"{config['paths']['config_dir']}/etcd-first-start.env"


def etcd(config, minion_id):
    """
    The etcd member ``minion_id`` (a node with the ``etcd`` role): mutual TLS on both ports -- clients and peers must
    present a certificate of the etcd CA -- with the PKI's ``etcd-server`` and ``etcd-peer`` certificates. Clients are
    served on the member's address and on 127.0.0.1, peers on the member's address only. etcd from the catalogue
    (``k8s:etcd:install: artifact``) runs from ``bin_dir``, the distribution's package from /usr/bin. Accepted by etcd
    3.4, 3.5 and 3.6. With ``k8s:etcd:user`` (default ``etcd``) the member runs as that user and owns its data
    directory, and reads its certificates and keys -- root's, 0600 -- from the copies systemd makes for this service
    alone (``LoadCredential=``).

    First start: etcd reads ``--initial-cluster`` and ``--initial-cluster-state`` only while its data directory
    holds no member, so they are not flags of the unit (which would then change whenever the cluster's membership
    does) but the variables of :py:func:`etcd_first_start_file`, which the unit reads and the state
    ``k8s_etcd.first_start`` writes, just before a first start.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.etcd "$(salt-call --out=json k8s.config | jq -c .local)" master01
    """
    node = _node(config, minion_id)
    members = config["cluster"]["etcd_members"]
    if minion_id not in members:
        raise SaltInvocationError(
            f"k8s:nodes:{minion_id}:roles: {minion_id} has no 'etcd' role; etcd members: {', '.join(members) or 'none'}"
        )
    settings, data_dir = config["etcd"], config["paths"]["etcd_data_dir"]
    client_url = topology.url(node["ip"], settings["client_port"])
    peers = topology.etcd_peer_urls(config)
    tls = {
        "trusted-ca-file": _ca(config, "etcd-ca"),
        "cert-file": _cert(config, "etcd-server")[0],
        "key-file": _cert(config, "etcd-server")[1],
        "peer-trusted-ca-file": _ca(config, "etcd-ca"),
        "peer-cert-file": _cert(config, "etcd-peer")[0],
        "peer-key-file": _cert(config, "etcd-peer")[1],
    }
    user = etcd_user(config)
    first_start_file = etcd_first_start_file(config)
    service = {
        "Type": "notify",
        "Restart": "on-failure",
        "RestartSec": 5,
        "LimitNOFILE": 65536,
        "EnvironmentFile": f"-{first_start_file}",
    }
    if user:
        # The PKI's files stay root's; systemd copies them for this service only (LoadCredential=).
        credentials = {source: f"{CREDENTIALS_DIR}/etcd.service/{os.path.basename(source)}" for source in tls.values()}
        tls = {flag: credentials[source] for flag, source in tls.items()}
        service = {
            "User": user,
            "Group": user,
            # '+': with full privileges, before the switch to the user (a data directory restored or written by an
            # earlier root-run etcd becomes the user's).
            "ExecStartPre": [["+/bin/chown", "-R", f"{user}:{user}", data_dir], ["+/bin/chmod", "0700", data_dir]],
            "LoadCredential": [f"{os.path.basename(source)}:{source}" for source in credentials],
            **service,
        }
    else:
        service = {"ExecStartPre": [["/bin/chmod", "0700", data_dir]], **service}
    flags = (
        _flags(
            {
                "name": minion_id,
                "data-dir": data_dir,
                "listen-client-urls": [client_url, topology.url("127.0.0.1", settings["client_port"])],
                "advertise-client-urls": client_url,
                "listen-peer-urls": peers[minion_id],
                "initial-advertise-peer-urls": peers[minion_id],
                "initial-cluster-token": config["cluster_name"],
            }
        )
        + ["--client-cert-auth"]
        + _flags({k: tls[k] for k in ("trusted-ca-file", "cert-file", "key-file")})
        + ["--peer-client-cert-auth"]
        + _flags(
            {
                **{k: tls[k] for k in ("peer-trusted-ca-file", "peer-cert-file", "peer-key-file")},
                "cipher-suites": config["tls"]["cipher_suites"],
            }
        )
    )
    return _spec(
        "etcd",
        "etcd key-value store (kubesalt)",
        _bin(config, "etcd") if settings["install"] == "artifact" else "/usr/bin/etcd",
        flags,
        certificates=["etcd-server", "etcd-peer"],
        after=["network-online.target"],
        service=service,
        documentation="https://etcd.io/docs/",
    )


def etcd_backup(config, minion_id, salt_call="/usr/bin/salt-call"):
    """
    The snapshot timer of etcd member ``minion_id`` (``k8s:etcd:backup``): a oneshot unit ``kubesalt-etcd-backup``
    that runs ``k8s_etcd.backup`` through ``salt-call --local`` -- every argument on its command line, so it needs
    neither the salt-master nor the pillar, and a backup is taken while the master is down -- and the timer that
    starts it (``schedule``, an OnCalendar expression; ``Persistent=`` catches up a run missed while the node was off).
    The snapshot comes from the member's own client URL with its ``etcd-healthcheck-client`` certificate.
    ``salt_call`` is the minion's salt-call program. The timer's text is under ``timer``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.etcd_backup "$(salt-call --out=json k8s.config | jq -c .local)" master01 /usr/bin/salt-call
    """
    _node(config, minion_id)
    if minion_id not in config["cluster"]["etcd_members"]:
        raise SaltInvocationError(f"k8s:nodes:{minion_id}:roles: {minion_id} has no 'etcd' role")
    backup = config["etcd"]["backup"]
    cert, key = _cert(config, "etcd-healthcheck-client")
    command = [
        salt_call,
        "--local",
        "--retcode-passthrough",
        "k8s_etcd.backup",
        f"directory={backup['dir']}",
        f"keep={backup['keep']}",
        f"endpoints={config['cluster']['etcd_local_url']}",
        f"ca={_ca(config, 'etcd-ca')}",
        f"cert={cert}",
        f"key={key}",
    ]
    if backup.get("copy_to"):
        command.append(f"copy_to={backup['copy_to']}")
    timer = "\n".join(
        [
            "# Managed by kubesalt: built by k8s_conf from the k8s pillar; edit the pillar, not this file.",
            "[Unit]",
            "Description=etcd snapshot timer (kubesalt)",
            "",
            "[Timer]",
            f"OnCalendar={backup['schedule']}",
            "RandomizedDelaySec=600",
            "Persistent=true",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )
    return _spec(
        "kubesalt-etcd-backup",
        "etcd snapshot of this member (kubesalt)",
        None,
        [],
        certificates=[],
        after=["etcd.service"],
        service={"Type": "oneshot", "UMask": "0077"},
        commands=[command],
        timer=timer,
        documentation="https://etcd.io/docs/v3.5/op-guide/recovery/",
    )


# --------------------------------------------------------------------------------------------------------------------
# Control plane
# --------------------------------------------------------------------------------------------------------------------
def apiserver(config, minion_id):
    """
    The kube-apiserver of master ``minion_id``: Node,RBAC authorization, NodeRestriction, etcd over mutual TLS,
    encryption of Secrets at rest (the EncryptionConfiguration generated once on the CA minion), bound
    service-account tokens signed with the cluster key, kubelet client certificates and kubelet serving-cert
    verification, the front-proxy (aggregation) client, optional auditing.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.apiserver "$(salt-call --out=json k8s.config | jq -c .local)" master01
    """
    _require_role(config, minion_id, "master")
    node, api = _node(config, minion_id), config.get("apiserver") or {}
    nets, domain = config["networks"], config["cluster_domain"]
    files, audit, admission = {}, {}, {}
    if api.get("audit_rules"):
        policy = f"{config['paths']['config_dir']}/audit-policy.yaml"
        files[policy] = {
            "contents": _yaml({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": api["audit_rules"]}),
            "mode": "0600",
        }
        audit = {
            "audit-policy-file": policy,
            "audit-log-path": api.get("audit_log_path"),
            "audit-log-maxage": 30,
            "audit-log-maxbackup": 10,
            "audit-log-maxsize": 100,
        }
    if api["pod_security_api_version"]:
        admission_file = f"{config['paths']['config_dir']}/admission.yaml"
        files[admission_file] = {"contents": _yaml(admission_config(config)), "mode": "0600"}
        admission = {"admission-control-config-file": admission_file}
    tls_cert, tls_key = _cert(config, "apiserver")
    etcd_cert, etcd_key = _cert(config, "apiserver-etcd-client")
    kubelet_cert, kubelet_key = _cert(config, "apiserver-kubelet-client")
    proxy_cert, proxy_key = _cert(config, "front-proxy-client")
    flags = _flags(
        {
            "advertise-address": node["ip"],
            "secure-port": api["port"],
            "allow-privileged": True,
            "anonymous-auth": False,
            "authorization-mode": ["Node", "RBAC"],
            "enable-admission-plugins": ["NodeRestriction"],
            "client-ca-file": _ca(config, "kubernetes-ca"),
            "tls-cert-file": tls_cert,
            "tls-private-key-file": tls_key,
            "etcd-servers": topology.etcd_client_urls(config),
            "etcd-cafile": _ca(config, "etcd-ca"),
            "etcd-certfile": etcd_cert,
            "etcd-keyfile": etcd_key,
            "encryption-provider-config": _secret(config, "encryption-config"),
            "kubelet-certificate-authority": _ca(config, "kubernetes-ca"),
            "kubelet-client-certificate": kubelet_cert,
            "kubelet-client-key": kubelet_key,
            "kubelet-preferred-address-types": ["InternalIP", "Hostname"],
            "service-account-issuer": f"https://kubernetes.default.svc.{domain}",
            # The verification key as a public key: kube-apiserver cannot read an ECDSA private key in PKCS#8 form here.
            "service-account-key-file": pki.layout(config)["public_keys"]["service-account"],
            "service-account-signing-key-file": _secret(config, "service-account"),
            # Projected tokens expire when they say (1 h by default) instead of a year (CIS 1.2.30).
            "service-account-extend-token-expiration": False,
            "service-cluster-ip-range": nets["service_cidr"],
            "service-node-port-range": nets["node_port_range"],
            "requestheader-client-ca-file": _ca(config, "front-proxy-ca"),
            "requestheader-allowed-names": "front-proxy-client",
            "requestheader-extra-headers-prefix": "X-Remote-Extra-",
            "requestheader-group-headers": "X-Remote-Group",
            "requestheader-username-headers": "X-Remote-User",
            "proxy-client-cert-file": proxy_cert,
            "proxy-client-key-file": proxy_key,
            "profiling": False,
            "shutdown-delay-duration": f"{int(api['shutdown_delay'])}s",
            **_tls(config),
            **audit,
            **admission,
        }
    ) + _extra(config, "apiserver")
    return _spec(
        "kube-apiserver",
        "Kubernetes API server (kubesalt)",
        _bin(config, "kube-apiserver"),
        flags,
        files=files,
        certificates=["apiserver", "apiserver-etcd-client", "apiserver-kubelet-client", "front-proxy-client"],
        secrets=["service-account", "encryption-config"],
        public_keys=["service-account"],
        after=["network-online.target", "etcd.service"],
        service={"Restart": "on-failure", "RestartSec": 5, "LimitNOFILE": 65536},
    )


def _tls(config):
    """The TLS floor and the TLS 1.2 cipher suites of a Kubernetes server (``k8s:tls``)."""
    return {"tls-min-version": config["tls"]["min_version"], "tls-cipher-suites": config["tls"]["cipher_suites"]}


def admission_config(config):
    """
    The kube-apiserver's AdmissionConfiguration: PodSecurity admission with ``k8s:apiserver:pod_security`` (the level
    enforced in every namespace but the exempt ones, and the stricter level audit logs and warnings report).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.admission_config "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    api = config["apiserver"]
    levels = api["pod_security"]
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AdmissionConfiguration",
        "plugins": [
            {
                "name": "PodSecurity",
                "configuration": {
                    "apiVersion": api["pod_security_api_version"],
                    "kind": "PodSecurityConfiguration",
                    "defaults": {
                        f"{mode}{suffix}": value
                        for mode in ("enforce", "audit", "warn")
                        for suffix, value in (("", levels[mode]), ("-version", "latest"))
                    },
                    "exemptions": {
                        "usernames": [],
                        "runtimeClasses": [],
                        "namespaces": list(levels["exempt_namespaces"]),
                    },
                },
            }
        ],
    }


def _secure_serving(config, identity):
    """The serving flags of kube-controller-manager and kube-scheduler: authenticate and authorize requests through
    the API server with their own kubeconfig, serve on 127.0.0.1 with their own certificate."""
    kubeconfig_file = kubeconfig_path(config, identity)
    cert, key = _cert(config, identity)
    return {
        "authentication-kubeconfig": kubeconfig_file,
        "authorization-kubeconfig": kubeconfig_file,
        "bind-address": "127.0.0.1",
        "tls-cert-file": cert,
        "tls-private-key-file": key,
        "client-ca-file": _ca(config, "kubernetes-ca"),
        **_tls(config),
    }


def controller_manager(config, minion_id):
    """
    kube-controller-manager of master ``minion_id``: its own kubeconfig and serving certificate, leader election,
    service-account credentials per controller, the root CA for service-account token secrets. Signing of the
    certificates API (``--cluster-signing-*``) needs the Kubernetes CA private key, which never leaves the CA minion:
    it is configured on the CA minion only and the ``csrsigning`` controller is off elsewhere.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.controller_manager "$(salt-call --out=json k8s.config | jq -c .local)" master01
    """
    _require_role(config, minion_id, "master")
    nets = config["networks"]
    cm = config.get("controller_manager") or {}
    is_ca = minion_id == config["cluster"]["ca_minion"]
    # flanneld's kube subnet manager takes each node's subnet from node.spec.podCIDR
    allocate = bool(cm.get("allocate_node_cidrs")) or config["network"]["mode"] == "flannel"
    flags = _flags(
        {
            "kubeconfig": kubeconfig_path(config, "kube-controller-manager"),
            **_secure_serving(config, "kube-controller-manager"),
            "requestheader-client-ca-file": _ca(config, "front-proxy-ca"),
            "cluster-name": config["cluster_name"],
            "cluster-cidr": nets["pod_cidr"],
            "allocate-node-cidrs": allocate,
            "node-cidr-mask-size": nets["node_pod_prefix"] if allocate else None,
            "service-cluster-ip-range": nets["service_cidr"],
            "cluster-signing-cert-file": _ca(config, "kubernetes-ca") if is_ca else None,
            "cluster-signing-key-file": pki.layout(config)["cas"]["kubernetes-ca"]["key"] if is_ca else None,
            "controllers": None if is_ca else ["*", "-csrsigning"],
            "root-ca-file": _ca(config, "kubernetes-ca"),
            "service-account-private-key-file": _secret(config, "service-account"),
            "use-service-account-credentials": True,
            "terminated-pod-gc-threshold": cm["terminated_pod_gc_threshold"],
            "leader-elect": True,
            "profiling": False,
        }
    ) + _extra(config, "controller_manager")
    return _spec(
        "kube-controller-manager",
        "Kubernetes controller manager (kubesalt)",
        _bin(config, "kube-controller-manager"),
        flags,
        files=_kubeconfig_file(config, "kube-controller-manager", topology.daemon_api_url(config, minion_id)),
        certificates=["kube-controller-manager"],
        secrets=["service-account"],
        after=["kube-apiserver.service"],
    )


def scheduler(config, minion_id):
    """
    kube-scheduler of master ``minion_id``, configured by a KubeSchedulerConfiguration file (apiVersion from the
    version profile; ``k8s:scheduler:config`` is merged into it) with leader election.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.scheduler "$(salt-call --out=json k8s.config | jq -c .local)" master01
    """
    _require_role(config, minion_id, "master")
    sched = config.get("scheduler") or {}
    kubeconfig_file = kubeconfig_path(config, "kube-scheduler")
    config_file = f"{config['paths']['config_dir']}/kube-scheduler.yaml"
    obj = data.merge(
        {
            "apiVersion": sched["config_api_version"],
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": kubeconfig_file},
            "leaderElection": {"leaderElect": True},
        },
        sched.get("config"),
    )
    files = _kubeconfig_file(config, "kube-scheduler", topology.daemon_api_url(config, minion_id))
    files[config_file] = {"contents": _yaml(obj), "mode": "0600"}
    flags = _flags(
        {
            "config": config_file,
            **_secure_serving(config, "kube-scheduler"),
            "profiling": False,
        }
    ) + _extra(config, "scheduler")
    return _spec(
        "kube-scheduler",
        "Kubernetes scheduler (kubesalt)",
        _bin(config, "kube-scheduler"),
        flags,
        files=files,
        certificates=["kube-scheduler"],
        after=["kube-apiserver.service"],
    )


# --------------------------------------------------------------------------------------------------------------------
# Node components
# --------------------------------------------------------------------------------------------------------------------
def _runtime_bin(config, name):
    runtime = config.get("container_runtime") or {}
    return f"/usr/bin/{name}" if runtime.get("install") == "package" else _bin(config, name)


def _cni_bin_dir(config):
    runtime = config.get("container_runtime") or {}
    # Debian/Ubuntu's containernetworking-plugins package installs into /usr/lib/cni.
    return "/usr/lib/cni" if runtime.get("install") == "package" else config["paths"]["cni_bin_dir"]


def containerd_config(config):
    """
    containerd's ``config.toml`` as data: config version 2 for containerd 1.x, version 3 for 2.x (the CRI plugin
    was split). systemd cgroup driver, the sandbox image, runc from kubesalt's bin_dir, CNI directories and registry
    hosts in ``<containerd_config_dir>/certs.d``; ``k8s:container_runtime:config`` is merged over the result.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.containerd_config "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    runtime = config.get("container_runtime") or {}
    version = data.version(config["versions"]["containerd"]) or (0, 0, 0)
    certs_d = f"{config['paths']['containerd_config_dir']}/certs.d"
    runc = {
        "runtime_type": "io.containerd.runc.v2",
        "options": {"SystemdCgroup": True, "BinaryName": _runtime_bin(config, "runc")},
    }
    cni_dirs = {"bin_dir": _cni_bin_dir(config), "conf_dir": config["paths"]["cni_conf_dir"]}
    if version >= (2, 0, 0):
        if version >= (2, 1, 0):
            cni_dirs = {"bin_dirs": [cni_dirs["bin_dir"]], "conf_dir": cni_dirs["conf_dir"]}
        doc = {
            "version": 3,
            "plugins": {
                "io.containerd.cri.v1.images": {
                    "pinned_images": {"sandbox": runtime.get("sandbox_image")},
                    "registry": {"config_path": certs_d},
                },
                "io.containerd.cri.v1.runtime": {
                    "containerd": {"default_runtime_name": "runc", "runtimes": {"runc": runc}},
                    "cni": cni_dirs,
                },
            },
        }
    else:
        doc = {
            "version": 2,
            "plugins": {
                "io.containerd.grpc.v1.cri": {
                    "sandbox_image": runtime.get("sandbox_image"),
                    "containerd": {"default_runtime_name": "runc", "runtimes": {"runc": runc}},
                    "cni": cni_dirs,
                    "registry": {"config_path": certs_d},
                },
            },
        }
    return data.merge(doc, runtime.get("config"))


def registry_hosts(config):
    """
    ``{path: {contents, mode}}`` of containerd's per-registry files: ``certs.d/<registry>/hosts.toml`` (mirrors
    tried in order, then the registry itself) and ``ca.crt`` when the registry or its mirrors use a private CA.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.registry_hosts "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    runtime = config.get("container_runtime") or {}
    certs_d = f"{config['paths']['containerd_config_dir']}/certs.d"
    files = {}
    for registry, spec in sorted((runtime.get("registries") or {}).items()):
        spec = spec or {}
        directory = f"{certs_d}/{registry}"
        server = "https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}"
        doc = {"server": server}
        ca_file = f"{directory}/ca.crt" if spec.get("ca") else None
        if ca_file:
            files[ca_file] = {"contents": str(spec["ca"]).strip() + "\n", "mode": "0600"}
        hosts = {}
        for mirror in spec.get("mirrors") or []:
            entry = {"capabilities": ["pull", "resolve"]}
            if ca_file:
                entry["ca"] = ca_file
            hosts[str(mirror)] = entry
        if hosts:
            doc["host"] = hosts
        text = to_toml({k: v for k, v in doc.items() if k != "host"})
        for mirror, entry in hosts.items():
            text += "\n" + to_toml(entry, ("host", mirror))
        files[f"{directory}/hosts.toml"] = {"contents": text.rstrip("\n") + "\n", "mode": "0600"}
    return files


def containerd(config, minion_id):
    """
    containerd on node ``minion_id``: ``config.toml`` from :py:func:`containerd_config`, registry hosts, and the
    systemd unit (Delegate=yes, KillMode=process, as upstream ships it).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.containerd "$(salt-call --out=json k8s.config | jq -c .local)" worker01
    """
    _require_role(config, minion_id, "node")
    config_file = f"{config['paths']['containerd_config_dir']}/config.toml"
    files = {
        config_file: {
            "contents": "# Managed by kubesalt (k8s_conf.containerd_config).\n" + to_toml(containerd_config(config)),
            "mode": "0600",
        }
    }
    files.update(registry_hosts(config))
    return _spec(
        "containerd",
        "containerd container runtime (kubesalt)",
        _runtime_bin(config, "containerd"),
        [f"--config={config_file}"],
        files=files,
        after=["network.target", "local-fs.target"],
        service={
            "ExecStartPre": ["-/sbin/modprobe", "overlay"],
            "Type": "notify",
            "Delegate": "yes",
            "KillMode": "process",
            "Restart": "always",
            "RestartSec": 5,
            "LimitNPROC": "infinity",
            "LimitCORE": "infinity",
            "LimitNOFILE": "infinity",
            "TasksMax": "infinity",
            "OOMScoreAdjust": -999,
        },
    )


def kubelet_config(config, minion_id):
    """
    The KubeletConfiguration of node ``minion_id``: anonymous access off, webhook authentication and authorization,
    the cluster CA as client CA, its own serving certificate, cluster DNS and domain, the systemd cgroup driver,
    the containerd endpoint (a field from 1.27; a flag before), with ``k8s:kubelet:seccomp_default`` the runtime's
    default seccomp profile for every container, and the fields the release's version profile adds
    (``k8s:kubelet:version_config``, e.g. ``failCgroupV1`` from 1.35). ``k8s:kubelet:config`` is merged over it.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.kubelet_config "$(salt-call --out=json k8s.config | jq -c .local)" worker01
    """
    kubelet = config.get("kubelet") or {}
    cert, key = _cert(config, "kubelet")
    obj = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": _ca(config, "kubernetes-ca")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "systemd",
        "clusterDomain": config["cluster_domain"],
        "clusterDNS": [config["networks"]["cluster_dns_ip"]],
        "tlsCertFile": cert,
        "tlsPrivateKeyFile": key,
        "readOnlyPort": 0,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "failSwapOn": bool(kubelet["fail_swap_on"]),
        "maxPods": int(kubelet["max_pods"]),
        "registerNode": True,
        "podPidsLimit": int(kubelet["pod_pids_limit"]),
        "protectKernelDefaults": bool(kubelet["protect_kernel_defaults"]),
        "tlsMinVersion": config["tls"]["min_version"],
        "tlsCipherSuites": list(config["tls"]["cipher_suites"]),
    }
    if kubelet["seccomp_default"]:
        obj["seccompDefault"] = True
    if minion_id in config["cluster"]["masters"]:
        # Tainted from its first registration: no ordinary pod lands on a master before kubesalt labels it.
        obj["registerWithTaints"] = [{"key": config["master_taint"], "effect": "NoSchedule"}]
    if kubelet["runtime_endpoint_in_config"]:
        obj["containerRuntimeEndpoint"] = CONTAINERD_SOCKET
    return data.merge(data.merge(obj, kubelet.get("version_config")), kubelet.get("config"))


# The kernel tunables a kubelet with protectKernelDefaults insists on (pkg/kubelet/cm: setupKernelTunables).
KUBELET_SYSCTLS = {
    "vm.overcommit_memory": 1,
    "vm.panic_on_oom": 0,
    "kernel.panic": 10,
    "kernel.panic_on_oops": 1,
    "kernel.keys.root_maxkeys": 1000000,
    "kernel.keys.root_maxbytes": 25000000,
}


def node_packages(config):
    """
    The distribution packages every node installs: ``k8s:node_packages``, and nftables (the ``nft`` command
    kube-proxy runs) when ``k8s:kube_proxy:mode`` is nftables.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.node_packages "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    needed = ["nftables"] if config["kube_proxy"]["mode"] == "nftables" else []
    return data.dedupe([str(p) for p in config["node_packages"]] + needed)


def sysctls(config):
    """
    The kernel settings a node needs: IP forwarding, bridged traffic through iptables, and -- with
    ``k8s:kubelet:protect_kernel_defaults`` -- the values the kubelet then refuses to start without.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.sysctls "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    wanted = {"net.ipv4.ip_forward": 1, "net.bridge.bridge-nf-call-iptables": 1}
    if config["kubelet"]["protect_kernel_defaults"]:
        wanted.update(KUBELET_SYSCTLS)
    return wanted


def kubelet(config, minion_id):
    """
    The kubelet of node ``minion_id`` (masters are nodes too, tainted NoSchedule): node name = minion id (the
    certificate's ``system:node:<id>`` must match it for the Node authorizer), node IP from the inventory.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.kubelet "$(salt-call --out=json k8s.config | jq -c .local)" worker01
    """
    _require_role(config, minion_id, "node")
    node, kubelet_settings = _node(config, minion_id), config.get("kubelet") or {}
    config_file = f"{config['paths']['config_dir']}/kubelet.yaml"
    files = _kubeconfig_file(config, "kubelet", topology.daemon_api_url(config, minion_id))
    files[config_file] = {"contents": _yaml(kubelet_config(config, minion_id)), "mode": "0600"}
    flags = _flags(
        {
            "config": config_file,
            "kubeconfig": kubeconfig_path(config, "kubelet"),
            "hostname-override": minion_id,
            "node-ip": node["ip"],
            "root-dir": config["paths"]["kubelet_dir"],
        }
    ) + [str(f) for f in kubelet_settings.get("runtime_flags") or []]
    if not kubelet_settings["runtime_endpoint_in_config"]:
        flags.append(f"--container-runtime-endpoint={CONTAINERD_SOCKET}")
    flags += [str(f) for f in kubelet_settings.get("extra_flags") or []]
    return _spec(
        "kubelet",
        "Kubernetes node agent (kubesalt)",
        _bin(config, "kubelet"),
        flags,
        files=files,
        certificates=["kubelet"],
        after=["containerd.service"],
        requires=["containerd.service"],
    )


def kube_proxy_config(config, minion_id):
    """
    The KubeProxyConfiguration of node ``minion_id`` (mode iptables, ipvs or nftables, cluster CIDR, node name,
    metrics on 127.0.0.1); ``k8s:kube_proxy:config`` is merged over it.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.kube_proxy_config "$(salt-call --out=json k8s.config | jq -c .local)" worker01
    """
    proxy = config.get("kube_proxy") or {}
    obj = {
        "apiVersion": proxy["config_api_version"],
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig_path(config, "kube-proxy")},
        "mode": proxy["mode"],
        "clusterCIDR": config["networks"]["pod_cidr"],
        "hostnameOverride": minion_id,
        "bindAddress": _node(config, minion_id)["ip"],
        # Metrics on loopback only (CIS 4.3.1), whatever a release's default.
        "metricsBindAddress": "127.0.0.1:10249",
    }
    return data.merge(obj, proxy.get("config"))


def kube_proxy(config, minion_id):
    """
    kube-proxy of node ``minion_id``, configured by :py:func:`kube_proxy_config`.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.kube_proxy "$(salt-call --out=json k8s.config | jq -c .local)" worker01
    """
    _require_role(config, minion_id, "node")
    config_file = f"{config['paths']['config_dir']}/kube-proxy.yaml"
    files = _kubeconfig_file(config, "kube-proxy", topology.daemon_api_url(config, minion_id))
    files[config_file] = {"contents": _yaml(kube_proxy_config(config, minion_id)), "mode": "0600"}
    return _spec(
        "kube-proxy",
        "Kubernetes service proxy (kubesalt)",
        _bin(config, "kube-proxy"),
        [f"--config={config_file}"] + [str(f) for f in (config.get("kube_proxy") or {}).get("extra_flags") or []],
        files=files,
        certificates=["kube-proxy"],
        after=["network-online.target"],
    )


# --------------------------------------------------------------------------------------------------------------------
# Node-local API load balancer
# --------------------------------------------------------------------------------------------------------------------
HAPROXY = "/usr/sbin/haproxy"
_HAPROXY_WORD = re.compile(r"[^\s#'\"\\\x00-\x1f\x7f]+")


def _haproxy(sections):
    """haproxy configuration text from ``[(section header, [[word, ...], ...]), ...]``; every word checked to be one
    haproxy word (a value can never add a keyword, an argument or a comment)."""
    out = ["# Managed by kubesalt (k8s_conf.api_balancer): built from the k8s pillar; edit the pillar, not this file."]
    for header, lines in sections:
        out.append(" ".join(_haproxy_words(header)))
        out += ["    " + " ".join(_haproxy_words(line)) for line in lines]
    return "\n".join(out) + "\n"


def _haproxy_words(words):
    for word in words:
        if not _HAPROXY_WORD.fullmatch(str(word)):
            raise SaltInvocationError(f"{word!r} cannot be written into the haproxy configuration as one word")
    return [str(w) for w in words]


def _haproxy_address(ip, port):
    return f"ipv6@{ip}:{port}" if ":" in str(ip) else f"{ip}:{port}"


def api_balancer_config(config, minion_id, without=()):
    """
    The haproxy configuration of node ``minion_id``'s API balancer (``k8s:api_balancer``): TCP pass-through from
    127.0.0.1:<port> to every master of ``k8s:nodes``, each checked with ``GET /readyz`` over TLS (the server
    verified against the Kubernetes CA and its name, the node's ``kube-proxy`` certificate presented) every
    ``check_interval`` seconds. A master marked down has its connections closed, so clients reconnect to another
    (a watch resumes there); new connections go to the master with the fewest. Masters in ``without`` are left out
    (``k8s.node.remove`` of a master that is still in ``k8s:nodes``).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.api_balancer_config "$(salt-call --out=json k8s.config | jq -c .local)" worker01
    """
    _require_role(config, minion_id, "node")
    balancer, port = config["api_balancer"], config["apiserver"]["port"]
    cert, _key = _cert(config, "kube-proxy")  # the key beside it: kube-proxy.key (ssl-load-extra-del-ext)
    every = f"{int(balancer['check_interval'])}s"
    servers = [
        ["server", m, _haproxy_address(config["nodes"][m]["ip"], port), "check-sni", m, "verifyhost", m]
        for m in config["cluster"]["masters"]
        if m not in without
    ]
    return _haproxy(
        [
            (
                ["global"],
                [
                    ["user", "haproxy"],
                    ["group", "haproxy"],
                    ["maxconn", 4096],  # a node's own daemons: a few dozen connections
                    ["log", "stderr", "format", "short", "daemon", "notice"],
                    ["ssl-server-verify", "required"],
                    ["ssl-load-extra-del-ext"],
                    ["ssl-default-server-options", "ssl-min-ver", "TLSv1.2"],
                ],
            ),
            (
                ["defaults"],
                [
                    ["mode", "tcp"],
                    ["log", "global"],
                    ["option", "dontlognull"],
                    ["timeout", "connect", "5s"],
                    ["timeout", "check", "5s"],
                    # Watches are long-lived connections; the API server ends them itself.
                    ["timeout", "client", "24h"],
                    ["timeout", "server", "24h"],
                ],
            ),
            (
                ["frontend", "kube-apiserver"],
                [["bind", _haproxy_address("127.0.0.1", balancer["port"])], ["default_backend", "kube-apiserver"]],
            ),
            (
                ["backend", "kube-apiserver"],
                [
                    ["balance", "leastconn"],
                    # A connection a master refuses (restarting, not yet marked down) is retried on another.
                    ["retries", 3],
                    ["option", "redispatch", 1],
                    ["option", "httpchk"],
                    ["http-check", "send", "meth", "GET", "uri", "/readyz"],
                    ["http-check", "expect", "status", "200"],
                    [
                        "default-server",
                        "check",
                        "check-ssl",
                        "inter",
                        every,
                        "fall",
                        2,
                        "rise",
                        2,
                        "ca-file",
                        _ca(config, "kubernetes-ca"),
                        "crt",
                        cert,
                        "verify",
                        "required",
                        "on-marked-down",
                        "shutdown-sessions",
                    ],
                ]
                + servers,
            ),
        ]
    )


def api_balancer(config, minion_id, without=()):
    """
    The node-local API load balancer of node ``minion_id`` (``k8s:api_balancer``): haproxy from the distribution in
    master-worker mode as the unit ``kubesalt-api-balancer``, configured by :py:func:`api_balancer_config`. A
    changed configuration or ``kube-proxy`` certificate reloads it (``reload``: the new process takes new
    connections, open ones stay with the old); a changed unit restarts it.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.api_balancer "$(salt-call --out=json k8s.config | jq -c .local)" worker01
    """
    config_file = f"{config['paths']['config_dir']}/api-balancer.cfg"
    check = [HAPROXY, "-Ws", "-f", config_file, "-c", "-q"]
    return _spec(
        "kubesalt-api-balancer",
        "Node-local Kubernetes API load balancer (kubesalt)",
        HAPROXY,
        ["-Ws", "-f", config_file],
        files={config_file: {"contents": api_balancer_config(config, minion_id, without), "mode": "0600"}},
        certificates=["kube-proxy"],
        after=["network-online.target"],
        service={
            "ExecStartPre": [check],
            "ExecReload": [check, ["/bin/kill", "-USR2", "$MAINPID"]],
            "Type": "notify",
            "KillMode": "mixed",
            "LimitNOFILE": 16384,
            "Restart": "always",
            "RestartSec": 2,
            "SuccessExitStatus": 143,
        },
        documentation="https://docs.haproxy.org/",
        reload=True,
    )


# --------------------------------------------------------------------------------------------------------------------
# Pod network
# --------------------------------------------------------------------------------------------------------------------
def _cni_version(config):
    versions = config.get("versions") or {}
    runtime = config.get("container_runtime") or {}
    if (
        runtime.get("install") != "package"
        and (data.version(versions.get("cni_plugins")) or (0,)) >= (1, 0, 0)
        and (data.version(versions.get("containerd")) or (0,)) >= (1, 7, 0)
    ):
        return "1.0.0"
    return "0.4.0"


def pod_routes(config, minion_id):
    """
    Network mode ``routes``: ``[{"cidr", "via", "node"}]``, a route to every other node's pod subnet through that
    node's address, computed from the master-side inventory.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.pod_routes "$(salt-call --out=json k8s.config | jq -c .local)" worker01
    """
    cluster, nodes = config["cluster"], config.get("nodes") or {}
    routes = []
    for other in sorted(set(cluster["masters"]) | set(cluster["workers"])):
        cidr = cluster["pod_cidrs"].get(other)
        if other == minion_id or not cidr:
            continue
        routes.append({"cidr": cidr, "via": str(nodes[other]["ip"]), "node": other})
    return routes


def network(config, minion_id):
    """
    The pod network of node ``minion_id`` for ``k8s:network:mode``:

    - ``routes``: a CNI bridge + host-local conflist for the node's pod subnet (with portmap), and a oneshot unit
      ``kubesalt-pod-routes`` that installs the routes of :py:func:`pod_routes` at boot;
    - ``flannel``: ``10-flannel.conflist`` (flannel delegating to bridge, with portmap) and the flanneld unit with its
      kube subnet manager: it reads its node's subnet (node.spec.podCIDR, assigned by kube-controller-manager) from
      the API server with its own ``flannel`` credential. No node holds an etcd credential for it.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.network "$(salt-call --out=json k8s.config | jq -c .local)" worker01
    """
    _require_role(config, minion_id, "node")
    node = _node(config, minion_id)
    conf_dir = config["paths"]["cni_conf_dir"]
    mode = config["network"]["mode"]
    if mode == "flannel":
        conflist = {
            "cniVersion": "0.3.1",
            "name": "cbr0",
            "plugins": [
                {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        net_conf = f"{config['paths']['config_dir']}/flannel-net-conf.json"
        files = _kubeconfig_file(config, "flannel", topology.daemon_api_url(config, minion_id))
        files[net_conf] = {
            "contents": _json({"Network": config["networks"]["pod_cidr"], "Backend": config["network"]["backend"]}),
            "mode": "0600",
        }
        files[f"{conf_dir}/10-flannel.conflist"] = {"contents": _json(conflist), "mode": "0600"}
        return _spec(
            "flanneld",
            "flannel pod network (kubesalt)",
            _bin(config, "flanneld"),
            _flags(
                {
                    "kube-subnet-mgr": True,
                    "kubeconfig-file": kubeconfig_path(config, "flannel"),
                    "net-config-path": net_conf,
                    "iface": node["ip"],
                    "public-ip": node["ip"],
                    "subnet-file": FLANNEL_SUBNET_FILE,
                    "ip-masq": True,
                }
            ),
            files=files,
            certificates=["flannel"],
            after=["network-online.target"],
            before=["containerd.service", "kubelet.service"],
            # Outside a pod the kube subnet manager learns its node name from the environment.
            service={"Environment": f"NODE_NAME={minion_id}", "Restart": "on-failure", "RestartSec": 5},
        )
    pod_cidr = config["cluster"]["pod_cidrs"].get(minion_id)
    if not pod_cidr:
        raise SaltInvocationError(f"k8s:nodes:{minion_id}:pod_cidr: no pod subnet for {minion_id}")
    conflist = {
        "cniVersion": _cni_version(config),
        "name": "kubesalt",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}]},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    routes = pod_routes(config, minion_id)
    commands = [["/sbin/ip", "route", "replace", r["cidr"], "via", r["via"]] for r in routes]
    return _spec(
        "kubesalt-pod-routes",
        "Routes to the other nodes' pod subnets (kubesalt network mode routes)",
        None,
        [],
        files={f"{conf_dir}/10-kubesalt.conflist": {"contents": _json(conflist), "mode": "0600"}},
        after=["network-online.target"],
        before=["kubelet.service"],
        service={"Type": "oneshot", "RemainAfterExit": "yes"},
        commands=commands or [["/bin/true"]],
        routes=routes,
    )


# --------------------------------------------------------------------------------------------------------------------
# Cluster objects and add-ons (manifests the CA minion applies with k8s_kube)
# --------------------------------------------------------------------------------------------------------------------
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubesalt"}
# Built in since Kubernetes 1.11: get/list/watch/proxy nodes and every nodes/* subresource of the kubelet API.
KUBELET_API_ADMIN_ROLE = "system:kubelet-api-admin"
COREDNS_OBJECTS = "salt://k8s/addons/coredns.yaml"


def _binding(name, role, kind, subject):
    """A ClusterRoleBinding of ``role`` to one Group or User."""
    rbac = "rbac.authorization.k8s.io"
    return {
        "apiVersion": f"{rbac}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": dict(MANAGED_BY)},
        "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": rbac, "kind": kind, "name": subject}],
    }


def cluster_objects(config):
    """
    The cluster-wide objects kubesalt applies from the CA minion (a list of manifests):

    - the ClusterRoleBinding ``kubesalt:apiserver-kubelet-client``: the group of the API server's kubelet client
      certificate may use the kubelet API (built-in ``system:kubelet-api-admin``: ``kubectl logs/exec``);
    - with ``k8s:pki:super_admin``: ``kubesalt:cluster-admins`` (the admin credential's group) bound to
      ``cluster-admin`` -- applied with the super-admin credential, since admin has no rights before it;
    - in network mode flannel: flanneld's ClusterRole (read Nodes, patch their status) bound to its user.

    Everything else is built in: ``system:node:<id>`` in ``system:nodes`` (Node authorizer), ``system:kube-proxy``
    (``system:node-proxier``), ``system:kube-controller-manager``, ``system:kube-scheduler``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.cluster_objects "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    group = data.APISERVER_KUBELET_CLIENT_GROUP
    objects = [_binding(group, KUBELET_API_ADMIN_ROLE, "Group", group)]
    if config["pki"]["super_admin"]:
        objects.append(_binding(pki.ADMIN_GROUP, "cluster-admin", "Group", pki.ADMIN_GROUP))
    if config["network"]["mode"] == "flannel":
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": pki.FLANNEL_USER, "labels": dict(MANAGED_BY)},
                "rules": [
                    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
                    {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
                ],
            }
        )
        objects.append(_binding(pki.FLANNEL_USER, pki.FLANNEL_USER, "User", pki.FLANNEL_USER))
    return objects


def bootstrap_identity(config):
    """
    The credential that applies the cluster objects: ``super-admin`` where the admin credential gets its rights from
    those very objects (``k8s:pki:super_admin``), else ``admin``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.bootstrap_identity "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    return "super-admin" if config["pki"]["super_admin"] else "admin"


def coredns_objects(config, objects=None):
    """
    The CoreDNS add-on as a list of manifests, in apply order: ``objects`` (the data of
    ``formulas/k8s/addons/coredns.yaml``, read from the salt-master when omitted) with what the settings decide:
    labels ``k8s-app=kube-dns`` and ``app.kubernetes.io/managed-by=kubesalt`` on every object, the Corefile for
    ``k8s:cluster_domain``, the Deployment's ``k8s:addons:coredns:image`` and ``replicas`` and a toleration of
    ``k8s:master_taint``, the ``kube-dns`` Service at ``k8s:networks:cluster_dns_ip``. Empty when
    ``k8s:addons:coredns:enabled`` is false.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.coredns_objects "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    coredns = config["addons"]["coredns"]
    if not coredns["enabled"]:
        return []
    if objects is None:
        objects = salt.utils.yaml.safe_load(__salt__["cp.get_file_str"](COREDNS_OBJECTS) or "null")
    if not isinstance(objects, list):
        raise SaltInvocationError(f"the CoreDNS objects ({COREDNS_OBJECTS}) must be a list of manifests")
    objects = [data.merge({}, o) for o in objects]
    by_kind = {o["kind"]: o for o in objects}
    problems = [
        f"{COREDNS_OBJECTS} has no {kind}" for kind in ("ConfigMap", "Deployment", "Service") if kind not in by_kind
    ]
    if problems:
        raise SaltInvocationError("cannot build the CoreDNS objects: " + "; ".join(problems))
    for manifest in objects:
        labels = manifest["metadata"].setdefault("labels", {})
        labels.update({"k8s-app": "kube-dns"}, **MANAGED_BY)
    corefile = by_kind["ConfigMap"]["data"]["Corefile"]
    by_kind["ConfigMap"]["data"]["Corefile"] = corefile.replace("CLUSTER_DOMAIN", config["cluster_domain"].strip("."))
    spec = by_kind["Deployment"]["spec"]
    spec["replicas"] = coredns["replicas"]
    pod = spec["template"]["spec"]
    pod["tolerations"].append({"key": config["master_taint"], "operator": "Exists", "effect": "NoSchedule"})
    pod["containers"][0]["image"] = coredns["image"]
    by_kind["Service"]["spec"]["clusterIP"] = str(config["networks"]["cluster_dns_ip"])
    return objects


# --------------------------------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------------------------------
def _arg(value):
    """One command-line argument as systemd reads it back as exactly one argument (systemd.syntax "Quoting"):
    ``%`` and ``$`` doubled (no specifier or variable expansion; the whole argument ``$MAINPID`` alone is kept for
    ExecReload), and quoted, with C escapes, when it holds
    whitespace, a quote, a backslash, a ``;`` or a control character. A value validation missed can therefore
    never end the line (add a directive) or split into two arguments (add a flag)."""
    if value == "$MAINPID":  # the one systemd variable kubesalt writes itself (ExecReload=/bin/kill -USR2 $MAINPID)
        return value
    text = str(value).replace("%", "%%").replace("$", "$$")
    if text and not re.search(r"[\s\"'\\;\x00-\x1f\x7f]", text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = re.sub(r"[\x00-\x1f\x7f]", lambda m: _C_ESCAPES.get(m.group(0), f"\\x{ord(m.group(0)):02x}"), escaped)
    return f'"{escaped}"'


_C_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _setting(key, value):
    """A [Service] setting's value as written: one line, nothing systemd would expand."""
    text = str(value)
    if _CONTROL.search(text) or "%" in text or "$" in text:
        raise SaltInvocationError(f"unit setting {key}={text!r}: control characters, '%' and '$' are not written")
    return text


def _commands(value):
    """One command (a list of arguments) or a list of commands, as a list of commands."""
    return value if value and isinstance(value[0], list) else [value] if value else []


def _command(argv):
    """A command line (a list of arguments, or one word) for ExecStart/ExecStartPre, every argument quoted."""
    return " ".join(_arg(a) for a in ([argv] if isinstance(argv, str) else argv))


def unit(spec):
    """
    The text of the systemd unit for a component ``spec`` (see the module docstring): ``ExecStart`` from its
    ``exec`` and ``flags`` (or one ``ExecStart`` per entry of ``commands`` for oneshot units). Every argument is
    quoted for systemd (a value can never add a directive or a flag).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.unit "$(salt-call --out=json k8s_conf.kubelet ... | jq -c .local)"
    """
    lines = [
        "# Managed by kubesalt: built by k8s_conf from the k8s pillar; edit the pillar, not this file.",
        "[Unit]",
        f"Description={spec['description']}",
        f"Documentation={spec.get('documentation') or 'https://kubernetes.io/docs/'}",
    ]
    for key, what in (("After", "after"), ("Wants", "after"), ("Requires", "requires"), ("Before", "before")):
        values = [v for v in spec.get(what) or [] if key != "Wants" or v.endswith(".target")]
        if values:
            lines.append(f"{key}={' '.join(values)}")
    lines += ["", "[Service]"]
    service = dict(spec.get("service") or {})
    commands = {key: service.pop(key, None) or [] for key in ("ExecStartPre", "ExecReload")}
    for command in _commands(commands["ExecStartPre"]):
        lines.append(f"ExecStartPre={_command(command)}")
    if spec.get("exec"):
        flags = spec.get("flags") or []
        lines.append(f"ExecStart={_arg(spec['exec'])}" + "".join(f" \\\n  {_arg(flag)}" for flag in flags))
    for command in spec.get("commands") or []:
        lines.append(f"ExecStart={_command(command)}")
    for command in _commands(commands["ExecReload"]):
        lines.append(f"ExecReload={_command(command)}")
    for key, values in service.items():
        for value in values if isinstance(values, list) else [values]:
            lines.append(f"{key}={_arg(value) if key == 'Environment' else _setting(key, value)}")
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def unit_file(config, spec):
    """
    The systemd unit file of component ``spec`` as ``{path: {"contents", "mode"}}`` (the shape of a spec's
    ``files``): :py:func:`unit` in ``k8s:paths:unit_dir``, mode 0600 (CIS 1.1.1-1.1.8, 4.1.1). The ``service`` macro
    of ``formulas/k8s/macros.jinja`` writes it root's, like every file of a spec.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.unit_file "$(salt-call --out=json k8s.config | jq -c .local)" \\
            "$(salt-call --out=json k8s_conf.kubelet ... | jq -c .local)"
    """
    return {f"{config['paths']['unit_dir']}/{spec['unit']}.service": {"contents": unit(spec), "mode": "0600"}}
