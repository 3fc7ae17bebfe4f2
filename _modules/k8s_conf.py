"""
kubesalt component configuration, built as data.

Every file and command line kubesalt writes for a Kubernetes component comes from here: kubeconfigs, the
KubeletConfiguration, KubeProxyConfiguration and KubeSchedulerConfiguration objects, containerd's ``config.toml``,
CNI network configurations, the pod routes of network mode ``routes``, and the flag lists of every systemd unit.
The formulas only loop over what these functions return, so the SLS files stay thin and the logic is unit-tested
without a minion. The component specs are built here; the documents in them come from ``kubesalt.objects`` and
their text from the writers of ``kubesalt.render``.

Each ``<component>(config, minion_id)`` function returns a *component spec*::

    {"unit": "kube-apiserver", "description": "...", "exec": "/usr/local/bin/kube-apiserver",
     "flags": ["--flag=value", ...], "files": {path: {"contents": text, "mode": "0600"}},
     "certificates": [identities the service must restart for], "secrets": [...], "after": [...],
     "requires": [...], "service": {extra [Service] settings}, "reload": True if a file or certificate change
     reloads instead of restarting}

``config`` is the resolved settings mapping from ``k8s.settings`` (``k8s`` in ``k8s/map.jinja``). Paths in it already
carry ``fs_root``; sockets and kernel paths never do.
"""

import logging
import os

import salt.utils.yaml
from salt.exceptions import SaltInvocationError

from kubesalt import data, objects, pki, render, topology
from kubesalt.objects import COREDNS_OBJECTS
from kubesalt.objects import coredns_objects as _coredns_objects

log = logging.getLogger(__name__)

__virtualname__ = "k8s_conf"

FLANNEL_SUBNET_FILE = "/run/flannel/subnet.env"


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


def _secret(config, name):
    """Where a master holds cluster secret ``name``."""
    return pki.layout(config)["secrets"][name]["path"]


def _bin(config, name):
    return f"{config['paths']['bin_dir']}/{name}"


def _keypair(config, identity, cert_flag, key_flag):
    """``{cert_flag: certificate, key_flag: key}``: the two flags that name ``identity``'s files."""
    cert, key = objects.cert(config, identity)
    return {cert_flag: cert, key_flag: key}


def _extra(config, section, *keys):
    """The flags the settings add to a component: ``k8s:<section>:<key>`` for each of ``keys`` (by default the
    version profile's ``version_flags``, then the user's ``extra_flags``)."""
    sect = config.get(section) or {}
    return [str(f) for key in keys or ("version_flags", "extra_flags") for f in sect.get(key) or []]


def to_toml(data, _prefix=()):
    """
    Serialize nested mappings of strings, numbers, booleans and lists of scalars as TOML (what containerd reads).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.to_toml '{"version": 2}'
    """
    return render.to_toml(data, _prefix)


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
    return objects.kubeconfig(config, identity, server)


def kubeconfig_path(config, identity):
    """
    Where the kubeconfig of ``identity`` lives (``k8s:paths:config_dir``).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.kubeconfig_path "$(salt-call --out=json k8s.config | jq -c .local)" kubelet
    """
    return objects.kubeconfig_path(config, identity)


def _kubeconfig_file(config, identity, server):
    return {kubeconfig_path(config, identity): render.file(render.to_yaml(kubeconfig(config, identity, server)))}


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
    text = render.to_yaml(kubeconfig(config, "admin", server))
    paths = [kubeconfig_path(config, "admin")] + [
        str(p) for p in ((config.get("admin") or {}).get("kubeconfig_paths") or [])
    ]
    files = {path: render.file(text) for path in paths}
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
        "trusted-ca-file": objects.ca(config, "etcd-ca"),
        **_keypair(config, "etcd-server", "cert-file", "key-file"),
        "peer-trusted-ca-file": objects.ca(config, "etcd-ca"),
        **_keypair(config, "etcd-peer", "peer-cert-file", "peer-key-file"),
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
        render.flags(
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
        + render.flags({k: tls[k] for k in ("trusted-ca-file", "cert-file", "key-file")})
        + ["--peer-client-cert-auth"]
        + render.flags(
            {
                **{k: tls[k] for k in ("peer-trusted-ca-file", "peer-cert-file", "peer-key-file")},
                "cipher-suites": config["tls"]["cipher_suites"],
            }
        )
    )
    return render.spec(
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
    cert, key = objects.cert(config, "etcd-healthcheck-client")
    command = [
        salt_call,
        "--local",
        "--retcode-passthrough",
        "k8s_etcd.backup",
        f"directory={backup['dir']}",
        f"keep={backup['keep']}",
        f"endpoints={config['cluster']['etcd_local_url']}",
        f"ca={objects.ca(config, 'etcd-ca')}",
        f"cert={cert}",
        f"key={key}",
    ]
    if backup.get("copy_to"):
        command.append(f"copy_to={backup['copy_to']}")
    return render.spec(
        "kubesalt-etcd-backup",
        "etcd snapshot of this member (kubesalt)",
        None,
        [],
        certificates=[],
        after=["etcd.service"],
        service={"Type": "oneshot", "UMask": "0077"},
        commands=[command],
        timer=render.timer("etcd snapshot timer (kubesalt)", backup["schedule"]),
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
        audit_policy = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": api["audit_rules"]}
        files[policy] = render.file(render.to_yaml(audit_policy))
        audit = {
            "audit-policy-file": policy,
            "audit-log-path": api.get("audit_log_path"),
            "audit-log-maxage": 30,
            "audit-log-maxbackup": 10,
            "audit-log-maxsize": 100,
        }
    if api["pod_security_api_version"]:
        admission_file = f"{config['paths']['config_dir']}/admission.yaml"
        files[admission_file] = render.file(render.to_yaml(admission_config(config)))
        admission = {"admission-control-config-file": admission_file}
    flags = render.flags(
        {
            "advertise-address": node["ip"],
            "secure-port": api["port"],
            "allow-privileged": True,
            "anonymous-auth": False,
            "authorization-mode": ["Node", "RBAC"],
            "enable-admission-plugins": ["NodeRestriction"],
            "client-ca-file": objects.ca(config, "kubernetes-ca"),
            **_keypair(config, "apiserver", "tls-cert-file", "tls-private-key-file"),
            "etcd-servers": topology.etcd_client_urls(config),
            "etcd-cafile": objects.ca(config, "etcd-ca"),
            **_keypair(config, "apiserver-etcd-client", "etcd-certfile", "etcd-keyfile"),
            "encryption-provider-config": _secret(config, "encryption-config"),
            "kubelet-certificate-authority": objects.ca(config, "kubernetes-ca"),
            **_keypair(config, "apiserver-kubelet-client", "kubelet-client-certificate", "kubelet-client-key"),
            "kubelet-preferred-address-types": ["InternalIP", "Hostname"],
            "service-account-issuer": f"https://kubernetes.default.svc.{domain}",
            # The verification key as a public key: kube-apiserver cannot read an ECDSA private key in PKCS#8 form here.
            "service-account-key-file": pki.layout(config)["public_keys"]["service-account"],
            "service-account-signing-key-file": _secret(config, "service-account"),
            # Projected tokens expire when they say (1 h by default) instead of a year (CIS 1.2.30).
            "service-account-extend-token-expiration": False,
            "service-cluster-ip-range": nets["service_cidr"],
            "service-node-port-range": nets["node_port_range"],
            "requestheader-client-ca-file": objects.ca(config, "front-proxy-ca"),
            "requestheader-allowed-names": "front-proxy-client",
            "requestheader-extra-headers-prefix": "X-Remote-Extra-",
            "requestheader-group-headers": "X-Remote-Group",
            "requestheader-username-headers": "X-Remote-User",
            **_keypair(config, "front-proxy-client", "proxy-client-cert-file", "proxy-client-key-file"),
            "profiling": False,
            "shutdown-delay-duration": f"{int(api['shutdown_delay'])}s",
            **_tls(config),
            **audit,
            **admission,
        }
    ) + _extra(config, "apiserver")
    return render.spec(
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
    return objects.admission_config(config)


def _local_daemon(config, minion_id, name, description, first, own, files=None, **extra):
    """
    kube-controller-manager or kube-scheduler (``name``, also its identity and unit) of master ``minion_id``: its own
    kubeconfig, written with the spec; requests authenticated and authorized through the API server with it; served
    on 127.0.0.1 with its own certificate; profiling off. The flags: ``first``, the serving flags, ``own``, then
    ``k8s:<component>:version_flags`` and ``extra_flags``; ``files`` and ``extra`` add to the spec.
    """
    _require_role(config, minion_id, "master")
    kubeconfig_file = kubeconfig_path(config, name)
    serving = {
        "authentication-kubeconfig": kubeconfig_file,
        "authorization-kubeconfig": kubeconfig_file,
        "bind-address": "127.0.0.1",
        **_keypair(config, name, "tls-cert-file", "tls-private-key-file"),
        "client-ca-file": objects.ca(config, "kubernetes-ca"),
        **_tls(config),
    }
    section = name.removeprefix("kube-").replace("-", "_")
    return render.spec(
        name,
        description,
        _bin(config, name),
        render.flags({**first, **serving, **own, "profiling": False}) + _extra(config, section),
        files={**_kubeconfig_file(config, name, topology.daemon_api_url(config, minion_id)), **(files or {})},
        certificates=[name],
        after=["kube-apiserver.service"],
        **extra,
    )


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
    nets = config["networks"]
    cm = config.get("controller_manager") or {}
    is_ca = minion_id == config["cluster"]["ca_minion"]
    # flanneld's kube subnet manager takes each node's subnet from node.spec.podCIDR
    allocate = bool(cm.get("allocate_node_cidrs")) or config["network"]["mode"] == "flannel"
    own = {
        "requestheader-client-ca-file": objects.ca(config, "front-proxy-ca"),
        "cluster-name": config["cluster_name"],
        "cluster-cidr": nets["pod_cidr"],
        "allocate-node-cidrs": allocate,
        "node-cidr-mask-size": nets["node_pod_prefix"] if allocate else None,
        "service-cluster-ip-range": nets["service_cidr"],
        "cluster-signing-cert-file": objects.ca(config, "kubernetes-ca") if is_ca else None,
        "cluster-signing-key-file": pki.layout(config)["cas"]["kubernetes-ca"]["key"] if is_ca else None,
        "controllers": None if is_ca else ["*", "-csrsigning"],
        "root-ca-file": objects.ca(config, "kubernetes-ca"),
        "service-account-private-key-file": _secret(config, "service-account"),
        "use-service-account-credentials": True,
        "terminated-pod-gc-threshold": cm["terminated_pod_gc_threshold"],
        "leader-elect": True,
    }
    return _local_daemon(
        config,
        minion_id,
        "kube-controller-manager",
        "Kubernetes controller manager (kubesalt)",
        {"kubeconfig": kubeconfig_path(config, "kube-controller-manager")},
        own,
        secrets=["service-account"],
    )


def scheduler(config, minion_id):
    """
    kube-scheduler of master ``minion_id``, configured by a KubeSchedulerConfiguration file (apiVersion from the
    version profile; ``k8s:scheduler:config`` is merged into it) with leader election.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.scheduler "$(salt-call --out=json k8s.config | jq -c .local)" master01
    """
    sched = config.get("scheduler") or {}
    config_file = f"{config['paths']['config_dir']}/kube-scheduler.yaml"
    obj = data.merge(
        {
            "apiVersion": sched["config_api_version"],
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": kubeconfig_path(config, "kube-scheduler")},
            "leaderElection": {"leaderElect": True},
        },
        sched.get("config"),
    )
    return _local_daemon(
        config,
        minion_id,
        "kube-scheduler",
        "Kubernetes scheduler (kubesalt)",
        {"config": config_file},
        {},
        files={config_file: render.file(render.to_yaml(obj))},
    )


# --------------------------------------------------------------------------------------------------------------------
# Node components
# --------------------------------------------------------------------------------------------------------------------
def containerd_config(config):
    """
    containerd's ``config.toml`` as data: config version 2 for containerd 1.x, version 3 for 2.x (the CRI plugin
    was split). systemd cgroup driver, the sandbox image, runc from kubesalt's bin_dir, CNI directories and registry
    hosts in ``<containerd_config_dir>/certs.d``; ``k8s:container_runtime:config`` is merged over the result.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.containerd_config "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    return objects.containerd_config(config)


def registry_hosts(config):
    """
    ``{path: {contents, mode}}`` of containerd's per-registry files: ``certs.d/<registry>/hosts.toml`` (mirrors
    tried in order, then the registry itself) and ``ca.crt`` when the registry or its mirrors use a private CA.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.registry_hosts "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    return objects.registry_hosts(config)


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
        config_file: render.file(
            "# Managed by kubesalt (k8s_conf.containerd_config).\n" + to_toml(containerd_config(config))
        )
    }
    files.update(registry_hosts(config))
    return render.spec(
        "containerd",
        "containerd container runtime (kubesalt)",
        objects.runtime_bin(config, "containerd"),
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
    return objects.kubelet_config(config, minion_id)


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
    files[config_file] = render.file(render.to_yaml(kubelet_config(config, minion_id)))
    flags = render.flags(
        {
            "config": config_file,
            "kubeconfig": kubeconfig_path(config, "kubelet"),
            "hostname-override": minion_id,
            "node-ip": node["ip"],
            "root-dir": config["paths"]["kubelet_dir"],
        }
    ) + _extra(config, "kubelet", "runtime_flags")
    if not kubelet_settings["runtime_endpoint_in_config"]:
        flags.append(f"--container-runtime-endpoint={objects.CONTAINERD_SOCKET}")
    flags += _extra(config, "kubelet", "extra_flags")
    return render.spec(
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
    return objects.kube_proxy_config(config, minion_id, _node(config, minion_id)["ip"])


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
    files[config_file] = render.file(render.to_yaml(kube_proxy_config(config, minion_id)))
    return render.spec(
        "kube-proxy",
        "Kubernetes service proxy (kubesalt)",
        _bin(config, "kube-proxy"),
        [f"--config={config_file}"] + _extra(config, "kube_proxy", "extra_flags"),
        files=files,
        certificates=["kube-proxy"],
        after=["network-online.target"],
    )


# --------------------------------------------------------------------------------------------------------------------
# Node-local API load balancer
# --------------------------------------------------------------------------------------------------------------------
HAPROXY = "/usr/sbin/haproxy"


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
    return objects.api_balancer_config(config, without)


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
    return render.spec(
        "kubesalt-api-balancer",
        "Node-local Kubernetes API load balancer (kubesalt)",
        HAPROXY,
        ["-Ws", "-f", config_file],
        files={config_file: render.file(api_balancer_config(config, minion_id, without))},
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
def pod_routes(config, minion_id):
    """
    Network mode ``routes``: ``[{"cidr", "via", "node"}]``, a route to every other node's pod subnet through that
    node's address, computed from the master-side inventory.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.pod_routes "$(salt-call --out=json k8s.config | jq -c .local)" worker01
    """
    return objects.pod_routes(config, minion_id)


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
        net_conf = f"{config['paths']['config_dir']}/flannel-net-conf.json"
        files = _kubeconfig_file(config, "flannel", topology.daemon_api_url(config, minion_id))
        files[net_conf] = render.file(render.to_json(objects.flannel_net_conf(config)))
        name, conflist = objects.cni_conflist(config)
        files[f"{conf_dir}/{name}"] = render.file(render.to_json(conflist))
        return render.spec(
            "flanneld",
            "flannel pod network (kubesalt)",
            _bin(config, "flanneld"),
            render.flags(
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
    name, conflist = objects.cni_conflist(config, pod_cidr)
    routes = pod_routes(config, minion_id)
    commands = [["/sbin/ip", "route", "replace", r["cidr"], "via", r["via"]] for r in routes]
    return render.spec(
        "kubesalt-pod-routes",
        "Routes to the other nodes' pod subnets (kubesalt network mode routes)",
        None,
        [],
        files={f"{conf_dir}/{name}": render.file(render.to_json(conflist))},
        after=["network-online.target"],
        before=["kubelet.service"],
        service={"Type": "oneshot", "RemainAfterExit": "yes"},
        commands=commands or [["/bin/true"]],
        routes=routes,
    )


# --------------------------------------------------------------------------------------------------------------------
# Cluster objects and add-ons (manifests the CA minion applies with k8s_kube)
# --------------------------------------------------------------------------------------------------------------------
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
    return objects.cluster_objects(config)


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
    if objects is None and config["addons"]["coredns"]["enabled"]:
        objects = salt.utils.yaml.safe_load(__salt__["cp.get_file_str"](COREDNS_OBJECTS) or "null")
    return _coredns_objects(config, objects)


# --------------------------------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------------------------------
def unit(spec):
    """
    The text of the systemd unit for a component ``spec`` (see the module docstring): ``ExecStart`` from its
    ``exec`` and ``flags`` (or one ``ExecStart`` per entry of ``commands`` for oneshot units). Every argument is
    quoted for systemd (a value can never add a directive or a flag).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_conf.unit "$(salt-call --out=json k8s_conf.kubelet ... | jq -c .local)"
    """
    return render.unit(spec)


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
    return {f"{config['paths']['unit_dir']}/{spec['unit']}.service": render.file(unit(spec))}
