"""
The configuration documents and Kubernetes objects of a kubesalt cluster, built as data from the resolved settings.

Kubeconfigs, the KubeletConfiguration, KubeProxyConfiguration and AdmissionConfiguration, containerd's
``config.toml`` and registry hosts, the API balancer's haproxy configuration, the cluster's RBAC objects and the
CoreDNS add-on. ``k8s_conf`` puts them into its component specs and exposes each under the same name
(``salt-call k8s_conf.kubelet_config ...``), where they are documented; the writers of :py:mod:`kubesalt.render`
turn them into text.

``config`` is the resolved settings mapping from ``k8s.settings``. Plain values in, plain values out.
"""

from salt.exceptions import SaltInvocationError

from kubesalt import data, pki, render

CONTAINERD_SOCKET = "unix:///run/containerd/containerd.sock"
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
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubesalt"}
# Built in since Kubernetes 1.11: get/list/watch/proxy nodes and every nodes/* subresource of the kubelet API.
KUBELET_API_ADMIN_ROLE = "system:kubelet-api-admin"
COREDNS_OBJECTS = "salt://k8s/addons/coredns.yaml"


# --------------------------------------------------------------------------------------------------------------------
# Where the PKI's files are on a node
# --------------------------------------------------------------------------------------------------------------------
def cert(config, identity):
    """(certificate, key) paths of ``identity`` on a node (``kubesalt.pki.layout``)."""
    files = pki.layout(config)["certificates"][identity]
    return files["cert"], files["key"]


def ca(config, name):
    """The bundle of CA ``name`` every node holds."""
    return pki.layout(config)["cas"][name]["bundle"]


# --------------------------------------------------------------------------------------------------------------------
# Kubeconfigs and component configurations
# --------------------------------------------------------------------------------------------------------------------
def kubeconfig(config, identity, server):
    """A kubeconfig for ``identity``'s client certificate (by path) against ``server``, trusting the cluster CA."""
    name = str(config["cluster_name"])
    user = KUBECONFIG_USERS.get(identity, identity)
    cert_file, key_file = cert(config, identity)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority": ca(config, "kubernetes-ca")}}
        ],
        "users": [{"name": user, "user": {"client-certificate": cert_file, "client-key": key_file}}],
        "contexts": [{"name": f"{user}@{name}", "context": {"cluster": name, "user": user}}],
        "current-context": f"{user}@{name}",
        "preferences": {},
    }


def kubeconfig_path(config, identity):
    """Where the kubeconfig of ``identity`` lives (``k8s:paths:config_dir``)."""
    return f"{config['paths']['config_dir']}/{KUBECONFIGS[identity]}"


def admission_config(config):
    """The kube-apiserver's AdmissionConfiguration: PodSecurity admission with ``k8s:apiserver:pod_security``."""
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


def kubelet_config(config, minion_id):
    """The KubeletConfiguration of node ``minion_id``, ``k8s:kubelet:version_config`` and ``config`` merged over."""
    kubelet = config.get("kubelet") or {}
    cert_file, key_file = cert(config, "kubelet")
    obj = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": ca(config, "kubernetes-ca")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "systemd",
        "clusterDomain": config["cluster_domain"],
        "clusterDNS": [config["networks"]["cluster_dns_ip"]],
        "tlsCertFile": cert_file,
        "tlsPrivateKeyFile": key_file,
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


def kube_proxy_config(config, minion_id, node_ip):
    """The KubeProxyConfiguration of node ``minion_id`` at ``node_ip``; ``k8s:kube_proxy:config`` merged over."""
    proxy = config.get("kube_proxy") or {}
    obj = {
        "apiVersion": proxy["config_api_version"],
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig_path(config, "kube-proxy")},
        "mode": proxy["mode"],
        "clusterCIDR": config["networks"]["pod_cidr"],
        "hostnameOverride": minion_id,
        "bindAddress": node_ip,
        # Metrics on loopback only (CIS 4.3.1), whatever a release's default.
        "metricsBindAddress": "127.0.0.1:10249",
    }
    return data.merge(obj, proxy.get("config"))


# --------------------------------------------------------------------------------------------------------------------
# containerd
# --------------------------------------------------------------------------------------------------------------------
def runtime_bin(config, name):
    """Where the container runtime's program ``name`` is: the distribution's package or kubesalt's bin_dir."""
    runtime = config.get("container_runtime") or {}
    return f"/usr/bin/{name}" if runtime.get("install") == "package" else f"{config['paths']['bin_dir']}/{name}"


def cni_bin_dir(config):
    """Where the CNI plugins are."""
    runtime = config.get("container_runtime") or {}
    # Debian/Ubuntu's containernetworking-plugins package installs into /usr/lib/cni.
    return "/usr/lib/cni" if runtime.get("install") == "package" else config["paths"]["cni_bin_dir"]


def containerd_config(config):
    """containerd's ``config.toml`` as data (version 2 for containerd 1.x, 3 for 2.x)."""
    runtime = config.get("container_runtime") or {}
    version = data.version(config["versions"]["containerd"]) or (0, 0, 0)
    certs_d = f"{config['paths']['containerd_config_dir']}/certs.d"
    runc = {
        "runtime_type": "io.containerd.runc.v2",
        "options": {"SystemdCgroup": True, "BinaryName": runtime_bin(config, "runc")},
    }
    cni_dirs = {"bin_dir": cni_bin_dir(config), "conf_dir": config["paths"]["cni_conf_dir"]}
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
    """``{path: {contents, mode}}`` of containerd's ``certs.d/<registry>/hosts.toml`` and ``ca.crt`` files."""
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
            files[ca_file] = render.file(str(spec["ca"]).strip() + "\n")
        hosts = {}
        for mirror in spec.get("mirrors") or []:
            entry = {"capabilities": ["pull", "resolve"]}
            if ca_file:
                entry["ca"] = ca_file
            hosts[str(mirror)] = entry
        if hosts:
            doc["host"] = hosts
        text = render.to_toml({k: v for k, v in doc.items() if k != "host"})
        for mirror, entry in hosts.items():
            text += "\n" + render.to_toml(entry, ("host", mirror))
        files[f"{directory}/hosts.toml"] = render.file(text.rstrip("\n") + "\n")
    return files


# --------------------------------------------------------------------------------------------------------------------
# The pod network
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


def cni_conflist(config, pod_cidr=None):
    """``(file name, conflist)`` of the pod network ``k8s:network:mode``: flannel delegating to bridge, or (mode
    ``routes``) a bridge with host-local addresses from the node's ``pod_cidr``; both with portmap."""
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}}
    if config["network"]["mode"] == "flannel":
        flannel = {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}}
        return "10-flannel.conflist", {"cniVersion": "0.3.1", "name": "cbr0", "plugins": [flannel, portmap]}
    bridge = {
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": True,
        "ipMasq": True,
        "hairpinMode": True,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}]},
    }
    return "10-kubesalt.conflist", {
        "cniVersion": _cni_version(config),
        "name": "kubesalt",
        "plugins": [bridge, portmap],
    }


def flannel_net_conf(config):
    """flanneld's network configuration (``--net-config-path``): the cluster's pod network and the backend."""
    return {"Network": config["networks"]["pod_cidr"], "Backend": config["network"]["backend"]}


def pod_routes(config, minion_id):
    """Network mode ``routes``: ``[{"cidr", "via", "node"}]``, to every other node's pod subnet through its address."""
    cluster, nodes = config["cluster"], config.get("nodes") or {}
    routes = []
    for other in sorted(set(cluster["masters"]) | set(cluster["workers"])):
        cidr = cluster["pod_cidrs"].get(other)
        if other == minion_id or not cidr:
            continue
        routes.append({"cidr": cidr, "via": str(nodes[other]["ip"]), "node": other})
    return routes


# --------------------------------------------------------------------------------------------------------------------
# The node-local API balancer (haproxy)
# --------------------------------------------------------------------------------------------------------------------
def api_balancer_config(config, without=()):
    """The haproxy configuration text of a node's API balancer: every master but ``without`` behind 127.0.0.1."""
    balancer, port = config["api_balancer"], config["apiserver"]["port"]
    cert_file, _key = cert(config, "kube-proxy")  # the key beside it: kube-proxy.key (ssl-load-extra-del-ext)
    every = f"{int(balancer['check_interval'])}s"
    servers = [
        ["server", m, render.haproxy_address(config["nodes"][m]["ip"], port), "check-sni", m, "verifyhost", m]
        for m in config["cluster"]["masters"]
        if m not in without
    ]
    return render.haproxy(
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
                [
                    ["bind", render.haproxy_address("127.0.0.1", balancer["port"])],
                    ["default_backend", "kube-apiserver"],
                ],
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
                        ca(config, "kubernetes-ca"),
                        "crt",
                        cert_file,
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


# --------------------------------------------------------------------------------------------------------------------
# Cluster objects and add-ons (manifests the CA minion applies with k8s_kube)
# --------------------------------------------------------------------------------------------------------------------
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
    """The cluster-wide RBAC objects kubesalt applies from the CA minion (a list of manifests)."""
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


def coredns_objects(config, objects):
    """The CoreDNS add-on's manifests: ``objects`` (the data of :py:data:`COREDNS_OBJECTS`) with what the settings
    decide; ``[]`` when ``k8s:addons:coredns:enabled`` is false."""
    coredns = config["addons"]["coredns"]
    if not coredns["enabled"]:
        return []
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
