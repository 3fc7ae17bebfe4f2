"""
kubesalt cluster settings: merging, derived facts and validation.

The cluster's configuration is resolved in exactly one place, ``formulas/k8s/map.jinja``, which calls
:py:func:`settings` with ``defaults.yaml``, ``profiles.yaml``, ``catalogue.yaml`` and the ``k8s`` pillar. The result
is validated there before any state runs, so a broken pillar stops every SLS at render time, naming the bad key.

Everything below the Salt glue is plain Python over plain data: the unit tests call it without a minion.

Security note: roles, node addresses and etcd membership come from the ``k8s:nodes`` pillar, keyed by minion id,
never from grains (a minion sets its own grains).
"""

import copy
import logging
import re

from salt.exceptions import CommandExecutionError

from kubesalt import data, topology

log = logging.getLogger(__name__)

__virtualname__ = "k8s"

ARCHES = ("amd64", "arm64")
NETWORK_MODES = ("routes", "flannel")
ETCD_INSTALL = ("artifact", "package")
PROXY_MODES = ("iptables", "ipvs")

# Which catalogue components each role needs; validated only for the roles present in the inventory. Masters are
# nodes too (kubelet, kube-proxy, runtime; tainted NoSchedule), so they need the node components as well.
COMPONENTS_BY_ROLE = {
    "master": ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"),
    "node": ("kubelet", "kube-proxy"),
}
COMPONENTS_RUNTIME = ("containerd", "runc", "cni-plugins")
COMPONENTS_FLANNEL = ("flanneld", "flannel-cni-plugin")


def __virtual__():
    return __virtualname__


# --------------------------------------------------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------------------------------------------------
def _profile_for(version, profiles):
    """Return the merged profiles whose minor is <= ``version``'s minor, lowest first."""
    parsed = data.version(version)
    merged = {}
    if parsed is None:
        return merged
    keys = []
    for key in profiles or {}:
        parts = str(key).split(".")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            keys.append(((int(parts[0]), int(parts[1])), key))
    for kminor, key in sorted(keys):
        if kminor <= parsed[:2]:
            merged = data.merge(merged, profiles[key])
    return merged


def _resolve_paths(config):
    """Prefix every ``k8s:paths`` entry and the artifact cache with ``fs_root`` (empty on real nodes)."""
    root = str(config.get("fs_root") or "").rstrip("/")
    if root:
        config["paths"] = {k: root + str(v) for k, v in (config.get("paths") or {}).items()}
        artifacts = config.setdefault("artifacts", {})
        if artifacts.get("cache_dir"):
            artifacts["cache_dir"] = root + str(artifacts["cache_dir"])
    return config


def _merge_catalogue(catalogue, pins):
    """Return the catalogue's ``components`` with the pillar's ``k8s:artifacts:pins`` laid over it."""
    components = copy.deepcopy((catalogue or {}).get("components") or {})
    for name, versions in (pins or {}).items():
        comp = components.setdefault(name, {"versions": {}})
        if not isinstance(versions, dict):
            continue
        for version, arches in versions.items():
            if not isinstance(arches, dict):
                continue
            comp.setdefault("versions", {})
            comp["versions"][str(version)] = data.merge(comp["versions"].get(str(version)) or {}, arches)
    return components


def settings(defaults, profiles=None, pillar=None, catalogue=None, minion_id=None, validate=True):
    """
    Resolve the cluster settings: ``defaults`` <- version profile <- ``pillar``, then the artifact catalogue with
    pillar pins, fs_root-prefixed paths and the derived facts (``cluster``, see ``kubesalt.topology.derive``). With
    ``validate`` (the default), raise CommandExecutionError listing every problem when the merged settings are
    invalid, so nothing gets applied.

    This is what ``formulas/k8s/map.jinja`` calls; SLS files never read the pillar themselves (``k8s.config`` shows
    its result for a minion).

    CLI Example:

    .. code-block:: bash

        salt-call k8s.settings "$(cat defaults.json)" pillar='{nodes: {m1: {roles: [master, etcd], ip: 10.0.0.1}}}' \\
            minion_id=m1 validate=False
    """
    pillar = pillar or {}
    version = (pillar.get("versions") or {}).get("kubernetes") or (defaults.get("versions") or {}).get("kubernetes")
    config = data.merge(data.merge(defaults or {}, _profile_for(version, profiles)), pillar)
    config["catalogue"] = _merge_catalogue(catalogue, (config.get("artifacts") or {}).get("pins"))
    if validate:
        problems = check(config)
        if problems["errors"]:
            raise CommandExecutionError(
                "kubesalt: invalid configuration (nothing was changed):\n  - " + "\n  - ".join(problems["errors"])
            )
        for warning in problems["warnings"]:
            log.warning("kubesalt: %s", warning)
    return topology.derive(_resolve_paths(config), minion_id)


# --------------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------------
def _check_networks(config, err):
    nets = config.get("networks") or {}
    parsed = {}
    for key in ("node_cidr", "pod_cidr", "service_cidr"):
        value = nets.get(key)
        net = data.net(value)
        if net is None:
            err(
                f"k8s:networks:{key}: '{value}' is not a network in CIDR notation with no host bits set "
                "(e.g. 10.200.0.0/16)"
            )
        else:
            parsed[key] = net
    keys = sorted(parsed)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if parsed[a].version == parsed[b].version and parsed[a].overlaps(parsed[b]):
                err(
                    f"k8s:networks:{a}: {parsed[a]} overlaps k8s:networks:{b} ({parsed[b]}); "
                    "node, pod and service networks must be disjoint"
                )

    service = parsed.get("service_cidr")
    if service is not None:
        if service.num_addresses < 4:
            err(f"k8s:networks:service_cidr: {service} is too small; it needs the API service IP and the DNS IP")
        dns = data.ip(nets.get("cluster_dns_ip"))
        if dns is None:
            err(f"k8s:networks:cluster_dns_ip: '{nets.get('cluster_dns_ip')}' is not an IP address")
        elif dns not in service:
            err(f"k8s:networks:cluster_dns_ip: {dns} is outside k8s:networks:service_cidr ({service})")
        elif service.num_addresses >= 4 and dns == next(service.hosts()):
            err(
                f"k8s:networks:cluster_dns_ip: {dns} is the API service IP (first address of {service}); "
                "pick another address"
            )
        elif dns in (service.network_address, service.broadcast_address):
            err(f"k8s:networks:cluster_dns_ip: {dns} is the network or broadcast address of {service}")

    prefix = nets.get("node_pod_prefix")
    pod = parsed.get("pod_cidr")
    if not isinstance(prefix, int) or isinstance(prefix, bool) or not 1 <= prefix <= 32:
        err(f"k8s:networks:node_pod_prefix: '{prefix}' must be an integer prefix length (e.g. 24)")
    elif pod is not None:
        if prefix < pod.prefixlen:
            err(f"k8s:networks:node_pod_prefix: /{prefix} is larger than k8s:networks:pod_cidr ({pod})")
        else:
            capacity = 2 ** (prefix - pod.prefixlen)
            count = len(config.get("nodes") or {})
            if count > capacity:
                err(
                    f"k8s:networks:pod_cidr: {pod} holds only {capacity} node subnets of /{prefix}, "
                    f"but k8s:nodes has {count} nodes"
                )

    npr = str(nets.get("node_port_range", ""))
    match = re.match(r"^(\d+)-(\d+)$", npr)
    if not match or not 1 <= int(match.group(1)) < int(match.group(2)) <= 65535:
        err(f"k8s:networks:node_port_range: '{npr}' must be 'LOW-HIGH' with 1 <= LOW < HIGH <= 65535")
    return parsed


def _check_nodes(config, nets, err, warn):
    nodes = config.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        err("k8s:nodes: no nodes defined; give a mapping of minion id -> {roles: [...], ip: ...}")
        return
    seen_ips, seen_names = {}, {}
    for node_id in sorted(nodes, key=str):
        node = nodes[node_id]
        key = f"k8s:nodes:{node_id}"
        if not isinstance(node, dict):
            err(f"{key}: must be a mapping with roles and ip, got {node!r}")
            continue
        roles = topology.roles_of(node)
        if not roles:
            err(f"{key}:roles: no roles; use any of {', '.join(data.ROLES)}")
        for role in roles:
            if role not in data.ROLES:
                err(f"{key}:roles: unknown role '{role}'; known roles: {', '.join(data.ROLES)}")
        if len(set(roles)) != len(roles):
            err(f"{key}:roles: a role is listed twice: {roles}")
        ip = data.ip(node.get("ip"))
        if ip is None:
            err(f"{key}:ip: '{node.get('ip')}' is not an IP address")
        else:
            if "node_cidr" in nets and ip not in nets["node_cidr"]:
                err(f"{key}:ip: {ip} is outside k8s:networks:node_cidr ({nets['node_cidr']})")
            if str(ip) in seen_ips:
                err(f"{key}:ip: {ip} is already used by k8s:nodes:{seen_ips[str(ip)]}; a node is listed twice")
            seen_ips[str(ip)] = node_id
        names = node.get("names") or []
        if isinstance(names, str) or not isinstance(names, list):
            err(f"{key}:names: must be a list of DNS names")
            names = []
        for name in [str(node_id)] + [str(n) for n in names]:
            lowered = name.lower()
            if not data.is_dns_name(lowered):
                err(f"{key}: '{name}' is not a valid DNS name (it becomes a certificate SAN and a node name)")
            if lowered in seen_names and seen_names[lowered] != node_id:
                err(f"{key}: name '{name}' is already used by k8s:nodes:{seen_names[lowered]}; a node is listed twice")
            seen_names[lowered] = node_id
        if node.get("pod_cidr"):
            pc = data.net(node["pod_cidr"])
            pod = nets.get("pod_cidr")
            prefix = (config.get("networks") or {}).get("node_pod_prefix")
            if pc is None:
                err(f"{key}:pod_cidr: '{node['pod_cidr']}' is not a network in CIDR notation")
            elif pod is not None and (pc.version != pod.version or not pc.subnet_of(pod)):
                err(f"{key}:pod_cidr: {pc} is outside k8s:networks:pod_cidr ({pod})")
            elif isinstance(prefix, int) and pc.prefixlen != prefix:
                err(f"{key}:pod_cidr: {pc} is not a /{prefix} (k8s:networks:node_pod_prefix)")
        elif (
            "pod_cidr" in nets
            and "node_cidr" in nets
            and ip is not None
            and ip in nets["node_cidr"]
            and topology.node_pod_cidr(config, node_id) is None
        ):
            err(
                f"{key}:ip: host number of {ip} in {nets['node_cidr']} is beyond the "
                f"{2 ** max(0, (config['networks'].get('node_pod_prefix') or 0) - nets['pod_cidr'].prefixlen)}"
                f" node subnets of k8s:networks:pod_cidr ({nets['pod_cidr']}); pin k8s:nodes:{node_id}:pod_cidr "
                "or enlarge the pod network"
            )

    pod_cidrs = {}
    for node_id in sorted(nodes, key=str):
        cidr = topology.node_pod_cidr(config, node_id)
        if cidr and cidr in pod_cidrs:
            err(f"k8s:nodes:{node_id}:pod_cidr: {cidr} is also the pod subnet of k8s:nodes:{pod_cidrs[cidr]}")
        elif cidr:
            pod_cidrs[cidr] = node_id

    ids = [str(n) for n in nodes]
    masters = [n for n in ids if isinstance(nodes[n], dict) and "master" in topology.roles_of(nodes[n])]
    etcd = [n for n in ids if isinstance(nodes[n], dict) and "etcd" in topology.roles_of(nodes[n])]
    if not masters:
        err("k8s:nodes: no node has the 'master' role; a cluster needs at least one control-plane node")
    if not etcd:
        err("k8s:nodes: no node has the 'etcd' role; the cluster needs at least one etcd member")
    elif len(etcd) % 2 == 0:
        warn(
            f"k8s:nodes: {len(etcd)} etcd members ({', '.join(sorted(etcd))}) is an even number; it tolerates no "
            f"more failures than {len(etcd) - 1} members. Use an odd count"
        )

    ca_minion = (config.get("pki") or {}).get("ca_minion")
    if ca_minion and ca_minion not in nodes:
        err(f"k8s:pki:ca_minion: '{ca_minion}' is not a node in k8s:nodes")


def _check_versions(config, err):
    versions = config.get("versions") or {}
    if not isinstance(versions, dict):
        err("k8s:versions: must be a mapping of component -> MAJOR.MINOR.PATCH")
        return
    for name, value in versions.items():
        if not data.is_version(value):
            err(f"k8s:versions:{name}: '{value}' is not a MAJOR.MINOR.PATCH version (e.g. 1.34.10)")


def needed_components(config):
    """
    The catalogue components this inventory installs (by the roles present and the network mode).

    CLI Example:

    .. code-block:: bash

        salt-call k8s.needed_components "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    nodes = config.get("nodes") or {}
    roles = {r for n in nodes.values() if isinstance(n, dict) for r in topology.roles_of(n)}
    needed = list(COMPONENTS_BY_ROLE["master"]) if "master" in roles else []
    if roles & {"master", "worker"}:
        needed.extend(COMPONENTS_BY_ROLE["node"])
        runtime = config.get("container_runtime") or {}
        if runtime.get("install", "artifact") == "artifact":
            needed.extend(COMPONENTS_RUNTIME)
        if runtime.get("crictl", True):
            needed.append("crictl")
    if "etcd" in roles and (config.get("etcd") or {}).get("install") == "artifact":
        needed.append("etcd")
    if (config.get("network") or {}).get("mode") == "flannel" and roles & {"master", "worker"}:
        needed.extend(COMPONENTS_FLANNEL)
    return needed


def _check_artifacts(config, err):
    artifacts = config.get("artifacts") or {}
    arch = config.get("arch")
    if arch not in ARCHES:
        err(f"k8s:arch: '{arch}' is not supported; use one of {', '.join(ARCHES)}")
        return
    mirror = artifacts.get("mirror")
    if mirror and not re.match(r"^https?://[A-Za-z0-9.\-\[\]:]+(:\d+)?(/[^\s?#]*)?$", str(mirror)):
        err(f"k8s:artifacts:mirror: '{mirror}' is not an http(s) base URL (e.g. http://mirror.example:8080/k8s)")
    checksum_urls = artifacts.get("checksum_urls") or {}
    for comp, url in checksum_urls.items():
        if not re.match(r"^https?://\S+$", str(url)):
            err(f"k8s:artifacts:checksum_urls:{comp}: '{url}' is not an http(s) URL of a checksum file")
    catalogue = config.get("catalogue") or {}
    versions = config.get("versions") or {}
    # Every pinned digest must be well formed, in use or not: a typo in a pin for the next upgrade is found now,
    # not on the day the version changes.
    for comp, entry in sorted(catalogue.items()):
        for version, arches in sorted(((entry or {}).get("versions") or {}).items(), key=lambda kv: str(kv[0])):
            for pin_arch, digests in sorted((arches or {}).items()):
                for hash_type, value in sorted((digests or {}).items()):
                    if (
                        hash_type in data.HASH_SIZES
                        and value
                        and not re.fullmatch(rf"[0-9a-f]{{{data.HASH_SIZES[hash_type]}}}", str(value))
                    ):
                        err(
                            f"k8s:artifacts:pins:{comp}:{version}:{pin_arch}:{hash_type}: '{value}' is not a "
                            f"lowercase hex {hash_type} digest ({data.HASH_SIZES[hash_type]} characters)"
                        )
    for comp in needed_components(config):
        entry = catalogue.get(comp)
        if not entry:
            err(f"k8s:artifacts:pins:{comp}: component '{comp}' is not in the catalogue; pin its url and digest")
            continue
        vkey = entry.get("version_key", comp)
        version = str(versions.get(vkey, ""))
        if not data.is_version(version):
            continue  # reported by _check_versions
        digests = ((entry.get("versions") or {}).get(version) or {}).get(arch) or {}
        pinned = {h: digests.get(h) for h in data.HASH_SIZES if digests.get(h)}
        if not pinned and comp not in checksum_urls:
            err(
                f"k8s:artifacts:pins:{comp}:{version}:{arch}: no pinned sha256/sha512 digest for {comp} {version} "
                f"({arch}) in the catalogue or the pillar (k8s:versions:{vkey} = {version}); pin one, or opt in to "
                f"the official checksum file with k8s:artifacts:checksum_urls:{comp}"
            )


def _check_pki(config, err):
    pki = config.get("pki") or {}
    if pki.get("key_type") not in data.KEY_TYPES:
        err(f"k8s:pki:key_type: '{pki.get('key_type')}' is not supported; use one of {', '.join(data.KEY_TYPES)}")
    days = {}
    for key in ("ca_days", "cert_days", "renew_days"):
        value = pki.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            err(f"k8s:pki:{key}: '{value}' must be a positive number of days")
        else:
            days[key] = value
    if "ca_days" in days and "cert_days" in days and days["ca_days"] < days["cert_days"]:
        err(
            f"k8s:pki:ca_days: a CA lifetime of {days['ca_days']} days is shorter than the leaf lifetime "
            f"k8s:pki:cert_days ({days['cert_days']} days); leaves would outlive their CA"
        )
    if "renew_days" in days and "cert_days" in days and days["renew_days"] >= days["cert_days"]:
        err(
            f"k8s:pki:renew_days: {days['renew_days']} must be less than k8s:pki:cert_days ({days['cert_days']}), "
            "or every run would renew every certificate"
        )
    sans = pki.get("apiserver_extra_sans") or []
    if not isinstance(sans, list):
        err("k8s:pki:apiserver_extra_sans: must be a list of DNS names or IP addresses")
        sans = []
    for san in sans:
        if data.ip(san) is None and not data.is_dns_name(str(san).lower(), wildcard=True):
            err(f"k8s:pki:apiserver_extra_sans: '{san}' is neither an IP address nor a DNS name")


def _check_misc(config, err):
    domain = str(config.get("cluster_domain", ""))
    if not data.is_dns_name(domain):
        err(f"k8s:cluster_domain: '{domain}' is not a valid DNS domain (e.g. cluster.local)")
    name = str(config.get("cluster_name", ""))
    if not data.is_dns_label(name):
        err(f"k8s:cluster_name: '{name}' must be a lowercase DNS label (letters, digits, '-')")
    mode = (config.get("network") or {}).get("mode")
    if mode not in NETWORK_MODES:
        err(f"k8s:network:mode: '{mode}' is not supported; use one of {', '.join(NETWORK_MODES)}")
    etcd = config.get("etcd") or {}
    if etcd.get("install") not in ETCD_INSTALL:
        err(f"k8s:etcd:install: '{etcd.get('install')}' is not supported; use one of {', '.join(ETCD_INSTALL)}")
    for key in ("client_port", "peer_port"):
        port = etcd.get(key)
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            err(f"k8s:etcd:{key}: '{port}' is not a TCP port")
    if etcd.get("client_port") == etcd.get("peer_port"):
        err(f"k8s:etcd:peer_port: {etcd.get('peer_port')} is the same as k8s:etcd:client_port")
    prefix = str(etcd.get("network_prefix", ""))
    if not prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        err(
            f"k8s:etcd:network_prefix: '{prefix}' must be an absolute key prefix such as /coreos.com/network "
            "(leading '/', no trailing '/')"
        )
    proxy = (config.get("kube_proxy") or {}).get("mode")
    if proxy not in PROXY_MODES:
        err(f"k8s:kube_proxy:mode: '{proxy}' is not supported; use one of {', '.join(PROXY_MODES)}")
    for key, value in (config.get("paths") or {}).items():
        if not str(value).startswith("/"):
            err(f"k8s:paths:{key}: '{value}' must be an absolute path")
    root = str(config.get("fs_root") or "")
    if root and not root.startswith("/"):
        err(f"k8s:fs_root: '{root}' must be an absolute path (or empty)")
    _check_components(config, err)


def _check_components(config, err):
    api = config.get("apiserver") or {}
    port = api.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        err(f"k8s:apiserver:port: '{port}' is not a TCP port")
    endpoint = str(api.get("endpoint") or "")
    if endpoint and not re.match(r"^https://[A-Za-z0-9.\-\[\]:]+(:\d+)?/?$", endpoint):
        err(f"k8s:apiserver:endpoint: '{endpoint}' is not an https URL of the API (e.g. https://k8s-api.example:6443)")
    for section in ("apiserver", "controller_manager", "scheduler", "kubelet", "kube_proxy"):
        flags = (config.get(section) or {}).get("extra_flags") or []
        for flag in flags if isinstance(flags, list) else [flags]:
            if not re.match(r"^--[a-z0-9][a-z0-9-]*(=.*)?$", str(flag)):
                err(f"k8s:{section}:extra_flags: '{flag}' is not a --flag or --flag=value")
    runtime = config.get("container_runtime") or {}
    if runtime.get("install") not in ETCD_INSTALL:
        err(
            f"k8s:container_runtime:install: '{runtime.get('install')}' is not supported; use one of "
            f"{', '.join(ETCD_INSTALL)}"
        )
    for registry, spec in (runtime.get("registries") or {}).items():
        for mirror in (spec or {}).get("mirrors") or []:
            if not re.match(r"^https?://[A-Za-z0-9.\-\[\]:]+(/\S*)?$", str(mirror)):
                err(f"k8s:container_runtime:registries:{registry}:mirrors: '{mirror}' is not an http(s) URL")
        ca = (spec or {}).get("ca")
        if ca and "-----BEGIN CERTIFICATE-----" not in str(ca):
            err(f"k8s:container_runtime:registries:{registry}:ca: not a PEM certificate")
    for index, image in enumerate(runtime.get("images") or []):
        image = image if isinstance(image, dict) else {}
        where = f"k8s:container_runtime:images:{index}"
        if not image.get("name"):
            err(f"{where}:name: the image reference the archive holds is missing")
        if not re.match(r"^https?://\S+$", str(image.get("url", ""))):
            err(f"{where}:url: '{image.get('url')}' is not an http(s) URL")
        if not re.match(r"^[0-9a-f]{64}$", str(image.get("sha256", ""))):
            err(
                f"{where}:sha256: '{image.get('sha256')}' is not a sha256 digest (64 lowercase hex digits); an image "
                "archive is verified like every download"
            )
    batch = str(config.get("worker_batch", ""))
    if not re.match(r"^([1-9]\d*|([1-9]\d?|100)%)$", batch):
        err(f"k8s:worker_batch: '{batch}' must be a node count (e.g. 5) or a percentage (e.g. 25%)")
    for path in (config.get("admin") or {}).get("kubeconfig_paths") or []:
        if not str(path).startswith("/"):
            err(f"k8s:admin:kubeconfig_paths: '{path}' must be an absolute path")
    coredns = (config.get("addons") or {}).get("coredns") or {}
    if coredns.get("enabled") and not coredns.get("image"):
        err("k8s:addons:coredns:image: empty, but k8s:addons:coredns:enabled is true")


def check(config):
    """
    Validate merged settings (the output of :py:func:`settings` with ``validate=False``). Returns
    ``{"errors": [...], "warnings": [...]}``; every message starts with the pillar key it is about.

    CLI Example:

    .. code-block:: bash

        salt-call k8s.check "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    errors, warnings = [], []
    nets = _check_networks(config, errors.append)
    _check_nodes(config, nets, errors.append, warnings.append)
    _check_versions(config, errors.append)
    _check_artifacts(config, errors.append)
    _check_pki(config, errors.append)
    _check_misc(config, errors.append)
    return {"errors": errors, "warnings": warnings}


# --------------------------------------------------------------------------------------------------------------------
# Salt glue
# --------------------------------------------------------------------------------------------------------------------
_CONFIG_TEMPLATE = "salt://k8s/files/config.jinja"


def config(validate=False):
    """
    Return this minion's resolved kubesalt settings, exactly as every SLS sees them (rendered through
    ``k8s/map.jinja``). With ``validate=True`` an invalid configuration raises an error listing every problem.

    CLI Example:

    .. code-block:: bash

        salt-call k8s.config
        salt 'master01' k8s.config --out=yaml
    """
    rendered = __salt__["slsutil.renderer"](_CONFIG_TEMPLATE, default_renderer="jinja|yaml", validate=validate)
    if not isinstance(rendered, dict) or "k8s" not in rendered:
        raise CommandExecutionError(f"{_CONFIG_TEMPLATE} did not render to a mapping with a 'k8s' key")
    return rendered["k8s"]


def validate():
    """
    Validate this minion's kubesalt settings (defaults, version profile and the ``k8s`` pillar) and report every
    problem at once. Each message names the pillar key and the rule it breaks. Sets a non-zero exit code when the
    configuration is invalid.

    CLI Example:

    .. code-block:: bash

        salt-call k8s.validate
        salt -G 'role:master' k8s.validate
    """
    result = check(config(validate=False))
    result["valid"] = not result["errors"]
    if not result["valid"]:
        __context__["retcode"] = 1
    return result
