"""
kubesalt cluster settings: merging, derived facts and validation.

The cluster's configuration is resolved in exactly one place, ``formulas/k8s/map.jinja``, which calls
:py:func:`resolve`: :py:func:`settings` over ``defaults.yaml``, ``profiles.yaml``, ``catalogue.yaml`` and the ``k8s``
pillar, once per job. The result is validated there before any state runs, so a broken pillar stops every SLS at
render time, naming the bad key.

Everything below the Salt glue is plain Python over plain data: the unit tests call it without a minion.

Security note: roles, node addresses and etcd membership come from the ``k8s:nodes`` pillar, keyed by minion id,
never from grains (a minion sets its own grains).
"""

import copy
import json
import logging
import os

import salt.utils.files
import salt.utils.yaml
from salt.exceptions import CommandExecutionError

from kubesalt import data, schema, topology

try:
    from salt.utils.secret import expose as _unmasked
except ImportError:  # pragma: no cover - Salt before 3008 does not mask pillar values

    def _unmasked(value):
        return value


log = logging.getLogger(__name__)

__virtualname__ = "k8s"


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
def _profile_minor(key):
    """``"1.35"`` (a profiles.yaml key) -> ``(1, 35)``; None for anything else."""
    parts = str(key).split(".")
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 and all(p.isdigit() for p in parts) else None


def _minor_text(minor):
    return f"{minor[0]}.{minor[1]}"


def _profile_for(version, profiles):
    """Return the merged profiles whose minor is <= ``version``'s minor, lowest first."""
    parsed = data.version(version)
    merged = {}
    if parsed is None:
        return merged
    keys = sorted((_profile_minor(key), key) for key in profiles or {} if _profile_minor(key))
    for kminor, key in keys:
        if kminor <= parsed[:2]:
            merged = data.merge(merged, profiles[key])
    return merged


def _releases(profiles, catalogue):
    """
    The Kubernetes minors kubesalt knows, as ``"1.35"`` strings in ascending order: ``profiles``, those profiles.yaml
    has a version profile for (the oldest and the newest bound what kubesalt renders at all), and ``supported``,
    those the catalogue has digests for (the minors supported upstream; pillar pins do not add to them).
    """
    supported = set()
    for entry in ((catalogue or {}).get("components") or {}).values():
        if isinstance(entry, dict) and entry.get("version_key") == "kubernetes":
            supported.update(parsed[:2] for parsed in map(data.version, entry.get("versions") or {}) if parsed)
    known = sorted(minor for minor in map(_profile_minor, profiles or {}) if minor)
    return {"profiles": [_minor_text(m) for m in known], "supported": [_minor_text(m) for m in sorted(supported)]}


def _resolve_paths(config):
    """Prefix every ``k8s:paths`` entry, the artifact cache and the backup directories with ``fs_root`` (empty on
    real nodes)."""
    root = str(config.get("fs_root") or "").rstrip("/")
    if root:
        config["paths"] = {k: root + str(v) for k, v in (config.get("paths") or {}).items()}
        artifacts = config.setdefault("artifacts", {})
        if artifacts.get("cache_dir"):
            artifacts["cache_dir"] = root + str(artifacts["cache_dir"])
        for section in ("etcd", "pki"):
            backup = (config.get(section) or {}).get("backup")
            if isinstance(backup, dict) and backup.get("dir"):
                backup["dir"] = root + str(backup["dir"])
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
    pillar pins, the Kubernetes minors kubesalt knows and supports (``releases``: from ``profiles`` and the
    catalogue), fs_root-prefixed paths and the derived facts (``cluster``, see ``kubesalt.topology.derive``). With
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
    config["releases"] = _releases(profiles, catalogue)
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
# Validation: types first (kubesalt.schema), then the rules between keys
# --------------------------------------------------------------------------------------------------------------------
# Ports every node binds for itself, and who binds them.
FIXED_PORTS = {
    10250: "kubelet",
    10256: "kube-proxy health",
    10249: "kube-proxy metrics",
    10257: "kube-controller-manager",
    10259: "kube-scheduler",
}
# Directories a setting under k8s:paths must never be: kubesalt writes into them and removes the files it wrote, so
# they must be its own or, for binaries and units, a directory of their kind -- never a top-level system directory.
_SYSTEM_DIRS = {
    "/usr",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/local",
    "/usr/share",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/cache",
    "/var/run",
    "/etc",
    "/etc/systemd",
    "/opt",
    "/home",
    "/root",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/run",
    "/tmp",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/srv",
    "/mnt",
    "/media",
}
_SHARED_DIRS = ("bin_dir", "unit_dir", "cni_bin_dir")  # meant to be shared with the rest of the host


def _check_networks(config, err):
    nets = config["networks"]
    parsed = {key: data.net(nets[key]) for key in ("node_cidr", "pod_cidr", "service_cidr")}
    parsed = {key: net for key, net in parsed.items() if net is not None}
    families = {net.version for net in parsed.values()}
    if len(families) > 1:
        err(
            "k8s:networks: "
            + ", ".join(f"{k} {v} is IPv{v.version}" for k, v in sorted(parsed.items()))
            + "; kubesalt builds single-stack clusters: use one address family for all of them"
        )
    keys = sorted(parsed)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if parsed[a].version == parsed[b].version and parsed[a].overlaps(parsed[b]):
                err(
                    f"k8s:networks:{a}: {parsed[a]} overlaps k8s:networks:{b} ({parsed[b]}); "
                    "node, pod and service networks must be disjoint"
                )
    service, dns = parsed.get("service_cidr"), data.ip(nets["cluster_dns_ip"])
    if service is not None:
        if service.num_addresses < 4:
            err(f"k8s:networks:service_cidr: {service} is too small; it needs the API service IP and the DNS IP")
        if dns is None:
            pass  # reported by the schema
        elif dns.version != service.version or dns not in service:
            err(f"k8s:networks:cluster_dns_ip: {dns} is outside k8s:networks:service_cidr ({service})")
        elif service.num_addresses >= 4 and dns == next(service.hosts()):
            err(
                f"k8s:networks:cluster_dns_ip: {dns} is the API service IP (first address of {service}); "
                "pick another address"
            )
        elif dns in (service.network_address, service.broadcast_address):
            err(f"k8s:networks:cluster_dns_ip: {dns} is the network or broadcast address of {service}")
    prefix, pod = nets["node_pod_prefix"], parsed.get("pod_cidr")
    if pod is not None and isinstance(prefix, int):
        if not pod.prefixlen <= prefix <= pod.max_prefixlen:
            err(f"k8s:networks:node_pod_prefix: /{prefix} does not fit in k8s:networks:pod_cidr ({pod})")
        else:
            capacity, count = 2 ** (prefix - pod.prefixlen), len(config["nodes"] or {})
            if count > capacity:
                err(
                    f"k8s:networks:pod_cidr: {pod} holds only {capacity} node subnets of /{prefix}, "
                    f"but k8s:nodes has {count} nodes"
                )
    return parsed


def _check_nodes(config, nets, err, warn):
    nodes = config["nodes"]
    if not nodes:
        err("k8s:nodes: no nodes defined; give a mapping of minion id -> {roles: [...], ip: ...}")
        return
    seen_ips, seen_names = {}, {}
    for node_id in sorted(nodes, key=str):
        node, key = nodes[node_id], f"k8s:nodes:{node_id}"
        roles = topology.roles_of(node)
        if not roles:
            err(f"{key}:roles: no roles; use any of {', '.join(data.ROLES)}")
        if len(set(roles)) != len(roles):
            err(f"{key}:roles: a role is listed twice: {roles}")
        ip = data.ip(node.get("ip"))
        if ip is None:
            if "ip" not in node:
                err(f"{key}:ip: missing; every node needs its address on the node network")
        else:
            if "node_cidr" in nets and ip not in nets["node_cidr"]:
                err(f"{key}:ip: {ip} is outside k8s:networks:node_cidr ({nets['node_cidr']})")
            if str(ip) in seen_ips:
                err(f"{key}:ip: {ip} is already used by k8s:nodes:{seen_ips[str(ip)]}; a node is listed twice")
            seen_ips[str(ip)] = node_id
        for name in [str(node_id)] + [str(n) for n in node.get("names") or []]:
            if name in seen_names and seen_names[name] != node_id:
                err(f"{key}: name '{name}' is already used by k8s:nodes:{seen_names[name]}; a node is listed twice")
            seen_names[name] = node_id
        pinned, pod, prefix = (
            data.net(node.get("pod_cidr")),
            nets.get("pod_cidr"),
            config["networks"]["node_pod_prefix"],
        )
        if pinned is not None:
            if pod is not None and (pinned.version != pod.version or not pinned.subnet_of(pod)):
                err(f"{key}:pod_cidr: {pinned} is outside k8s:networks:pod_cidr ({pod})")
            elif isinstance(prefix, int) and pinned.prefixlen != prefix:
                err(f"{key}:pod_cidr: {pinned} is not a /{prefix} (k8s:networks:node_pod_prefix)")
        elif (
            pod is not None
            and "node_cidr" in nets
            and ip is not None
            and ip in nets["node_cidr"]
            and isinstance(prefix, int)
            and topology.node_pod_cidr(config, node_id) is None
        ):
            err(
                f"{key}:ip: host number of {ip} in {nets['node_cidr']} is beyond the "
                f"{2 ** max(0, prefix - pod.prefixlen)} node subnets of k8s:networks:pod_cidr ({pod}); pin "
                f"k8s:nodes:{node_id}:pod_cidr or enlarge the pod network"
            )
    pod_cidrs = {}
    for node_id in sorted(nodes, key=str):
        cidr = topology.node_pod_cidr(config, node_id)
        if cidr and cidr in pod_cidrs:
            err(f"k8s:nodes:{node_id}:pod_cidr: {cidr} is also the pod subnet of k8s:nodes:{pod_cidrs[cidr]}")
        elif cidr:
            pod_cidrs[cidr] = node_id
    masters = sorted(n for n in nodes if "master" in topology.roles_of(nodes[n]))
    etcd = sorted(n for n in nodes if "etcd" in topology.roles_of(nodes[n]))
    if not masters:
        err("k8s:nodes: no node has the 'master' role; a cluster needs at least one control-plane node")
    if not etcd:
        err("k8s:nodes: no node has the 'etcd' role; the cluster needs at least one etcd member")
    elif len(etcd) % 2 == 0:
        warn(
            f"k8s:nodes: {len(etcd)} etcd members ({', '.join(etcd)}) is an even number; it tolerates no "
            f"more failures than {len(etcd) - 1} members. Use an odd count"
        )
    ca_minion = config["pki"]["ca_minion"]
    if ca_minion and ca_minion not in nodes:
        err(f"k8s:pki:ca_minion: '{ca_minion}' is not a node in k8s:nodes")
    elif ca_minion and ca_minion not in masters:
        err(
            f"k8s:pki:ca_minion: '{ca_minion}' is not a master in k8s:nodes; the CA minion holds the admin "
            "credential and applies the cluster objects, so it must be one of the masters"
        )


def needed_components(config):
    """
    The catalogue components this inventory installs (by the roles present and the network mode).

    CLI Example:

    .. code-block:: bash

        salt-call k8s.needed_components "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    nodes = config.get("nodes") or {}
    roles = {r for n in nodes.values() for r in topology.roles_of(n)}
    needed = list(COMPONENTS_BY_ROLE["master"]) if "master" in roles else []
    if roles & {"master", "worker"}:
        needed.extend(COMPONENTS_BY_ROLE["node"])
        runtime = config["container_runtime"]
        if runtime["install"] == "artifact":
            needed.extend(COMPONENTS_RUNTIME)
        if runtime["crictl"]:
            needed.append("crictl")
    if "etcd" in roles and config["etcd"]["install"] == "artifact":
        needed.append("etcd")
    if config["network"]["mode"] == "flannel" and roles & {"master", "worker"}:
        needed.extend(COMPONENTS_FLANNEL)
    return needed


def _check_artifacts(config, err):
    catalogue, versions, arch = config.get("catalogue") or {}, config["versions"], config["arch"]
    checksum_urls = config["artifacts"]["checksum_urls"]
    for comp in needed_components(config):
        entry = catalogue.get(comp)
        if not entry:
            err(f"k8s:artifacts:pins:{comp}: component '{comp}' is not in the catalogue; pin its url and digest")
            continue
        vkey = entry.get("version_key", comp)
        version = str(versions.get(vkey, ""))
        if not data.is_version(version):
            continue  # the schema reports a malformed version; a missing one is a catalogue error below
        digests = ((entry.get("versions") or {}).get(version) or {}).get(arch) or {}
        pinned = {h: digests.get(h) for h in data.HASH_SIZES if digests.get(h)}
        if not pinned and comp not in checksum_urls:
            err(
                f"k8s:artifacts:pins:{comp}:{version}:{arch}: no pinned sha256/sha512 digest for {comp} {version} "
                f"({arch}) in the catalogue or the pillar (k8s:versions:{vkey} = {version}); pin one, or opt in to "
                f"the official checksum file with k8s:artifacts:checksum_urls:{comp}"
            )


def _check_release(config, err, warn):
    """The Kubernetes release against what kubesalt knows (``releases``, see :py:func:`_releases`), and the settings
    its version profile rules on: the kube-proxy mode and the containerd version."""
    version = str(config["versions"].get("kubernetes", ""))
    parsed = data.version(version)
    releases = config.get("releases") or {}
    known, supported = releases.get("profiles") or [], releases.get("supported") or []
    listing = ", ".join(supported) or "none"
    if parsed and known:
        low, high = _profile_minor(known[0]), _profile_minor(known[-1])
        if not low <= parsed[:2] <= high:
            err(
                f"k8s:versions:kubernetes: {version} is {'older' if parsed[:2] < low else 'newer'} than every "
                f"Kubernetes release this kubesalt knows (version profiles {known[0]} to {known[-1]}); supported "
                f"minors: {listing}. Pick one of them (README: Versions and support)"
            )
            return
        if _minor_text(parsed[:2]) not in supported:
            warn(
                f"k8s:versions:kubernetes: {version} is out of upstream support (kubesalt supports {listing}); it is "
                "rendered with its version profile, and installs only with digests from the pillar "
                "(k8s:artifacts:pins): the catalogue has none for it"
            )
    proxy = config["kube_proxy"]
    modes, mode = proxy["modes"], proxy["mode"]
    status = modes.get(mode, "unavailable")
    if status != "supported":
        fine = [m for m in sorted(modes) if modes[m] == "supported"]
        what = "deprecated" if status == "deprecated" else "not available"
        (warn if status == "deprecated" else err)(
            f"k8s:kube_proxy:mode: '{mode}' is {what} in Kubernetes {version}; use {' or '.join(fine) or 'another'}"
        )
    runtime, containerd = config["container_runtime"], str(config["versions"].get("containerd", ""))
    floor = runtime["containerd_deprecated_below"]
    if floor and runtime["install"] == "artifact" and (data.version(containerd) or (0,)) < data.version(floor):
        warn(
            f"k8s:versions:containerd: {containerd} is deprecated with Kubernetes {version}: the kubelet serves "
            f"containerd below {floor} only through a fallback that is being removed; use containerd {floor} or newer"
        )


def _check_pki(config, err):
    pki = config["pki"]
    if pki["ca_days"] < pki["cert_days"]:
        err(
            f"k8s:pki:ca_days: a CA lifetime of {pki['ca_days']} days is shorter than the leaf lifetime "
            f"k8s:pki:cert_days ({pki['cert_days']} days); leaves would outlive their CA"
        )
    if pki["renew_days"] >= pki["cert_days"]:
        err(
            f"k8s:pki:renew_days: {pki['renew_days']} must be less than k8s:pki:cert_days ({pki['cert_days']}), "
            "or every run would renew every certificate"
        )


def _check_ports(config, err):
    """Two services of one host on the same port, or a NodePort range that takes a port a node service binds."""
    ports = {
        "k8s:apiserver:port": config["apiserver"]["port"],
        "k8s:etcd:client_port": config["etcd"]["client_port"],
        "k8s:etcd:peer_port": config["etcd"]["peer_port"],
    }
    if config["api_balancer"]["enabled"]:
        ports["k8s:api_balancer:port"] = config["api_balancer"]["port"]
    owners = dict(FIXED_PORTS)
    for key, port in ports.items():
        if port in owners:
            err(f"{key}: {port} is already the port of {owners[port]}; two services of one host cannot share a port")
        owners.setdefault(port, key)
    low, high = (int(p) for p in config["networks"]["node_port_range"].split("-"))
    for port, what in sorted(owners.items()):
        if low <= port <= high:
            err(
                f"k8s:networks:node_port_range: {low}-{high} includes port {port} of {what}; kube-proxy opens every "
                "NodePort on every node"
            )


def _check_paths(config, err):
    for key, path in config["paths"].items():
        norm = "/" + str(path).strip("/")
        if norm == "/" or (key not in _SHARED_DIRS and norm in _SYSTEM_DIRS) or norm.count("/") < 2:
            err(
                f"k8s:paths:{key}: '{path}' is a system directory, not one kubesalt may own; use a directory of its "
                f"own, e.g. the default in defaults.yaml"
            )
    if config["artifacts"]["cache_dir"].rstrip("/") in _SYSTEM_DIRS | {""}:
        err(
            f"k8s:artifacts:cache_dir: '{config['artifacts']['cache_dir']}' is a system directory; use a directory "
            "of its own, e.g. /var/cache/kubesalt/artifacts"
        )
    for path in config["admin"]["kubeconfig_paths"]:
        if path.rstrip("/") in _SYSTEM_DIRS | {""}:
            err(f"k8s:admin:kubeconfig_paths: '{path}' is a directory; name the kubeconfig file")


def _check_misc(config, err):
    if config["etcd"]["client_port"] == config["etcd"]["peer_port"]:
        err(f"k8s:etcd:peer_port: {config['etcd']['peer_port']} is the same as k8s:etcd:client_port")
    coredns = config["addons"]["coredns"]
    if coredns["enabled"] and not coredns["image"]:
        err("k8s:addons:coredns:image: empty, but k8s:addons:coredns:enabled is true")


def check(config):
    """
    Validate merged settings (the output of :py:func:`settings` with ``validate=False``). Returns
    ``{"errors": [...], "warnings": [...]}``; every message starts with the pillar key it is about. The types of
    every key are checked first (``kubesalt.schema``); the rules between keys then run on what is well typed.

    CLI Example:

    .. code-block:: bash

        salt-call k8s.check "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    errors, warnings = list(schema.errors(config)), []
    if errors:
        # The rules below read typed values: run them only on the sections that are well typed.
        broken = {e.split(": ", 1)[0].split(":")[1] if e.count(":") > 1 else "" for e in errors}
    else:
        broken = set()
    sections = (
        ("networks", _check_networks),
        ("nodes", None),
        ("release", None),
        ("artifacts", _check_artifacts),
        ("pki", _check_pki),
        ("ports", _check_ports),
        ("paths", _check_paths),
        ("misc", _check_misc),
    )
    needs = {
        "networks": {"networks", "nodes"},
        "nodes": {"nodes", "networks", "pki"},
        "release": {"versions", "kube_proxy", "container_runtime"},
        "artifacts": {"versions", "arch", "artifacts", "container_runtime", "etcd", "network", "nodes"},
        "pki": {"pki"},
        "ports": {"apiserver", "etcd", "networks"},
        "paths": {"paths", "artifacts", "admin"},
        "misc": {"etcd", "addons"},
    }
    nets = {}
    for name, rule in sections:
        if needs[name] & broken or "" in broken:
            continue
        if name == "networks":
            nets = _check_networks(config, errors.append)
        elif name == "nodes":
            _check_nodes(config, nets, errors.append, warnings.append)
        elif name == "release":
            _check_release(config, errors.append, warnings.append)
        else:
            rule(config, errors.append)
    return {"errors": errors, "warnings": warnings}


# --------------------------------------------------------------------------------------------------------------------
# Salt glue
# --------------------------------------------------------------------------------------------------------------------
# The formula's data files map.jinja resolves the settings from (k8s/<name>.yaml on the salt-master's fileserver).
_FORMULA_DATA = ("defaults", "profiles", "catalogue")


def _formula_data(saltenv, fetch=True):
    """``{name: parsed}`` of :py:data:`_FORMULA_DATA`, read with Salt's YAML loader as ``import_yaml`` reads them.
    With ``fetch`` each is fetched from the fileserver (a hash round trip when the cached copy is current); without,
    the copy in this minion's file cache is read as its last render left it (fetched only when there is none), found
    where Salt's file client caches ``salt://`` files, ``<cachedir>/files/<saltenv>/<path>`` (what ``cp.is_cached``
    checks, without the file client that call sets up: most of a signing request's CPU on the CA minion)."""
    loaded = {}
    for name in _FORMULA_DATA:
        url = f"salt://k8s/{name}.yaml"
        path = None if fetch else os.path.join(__opts__["cachedir"], "files", saltenv, "k8s", f"{name}.yaml")
        if not (path and os.path.isfile(path)):
            path = __salt__["cp.cache_file"](url, saltenv)
        if not path:
            raise CommandExecutionError(f"{url} (saltenv {saltenv}) is not on the salt-master's fileserver")
        with salt.utils.files.fopen(path, "r") as fh:
            loaded[name] = salt.utils.yaml.safe_load(fh) or {}
    return loaded


def resolve(saltenv="base", validate=True, fetch=True):
    """
    This minion's settings as every SLS sees them: :py:func:`settings` over ``k8s/defaults.yaml``,
    ``k8s/profiles.yaml`` and ``k8s/catalogue.yaml`` from the salt-master's fileserver and the ``k8s`` pillar. This
    is what ``formulas/k8s/map.jinja`` calls. Within one job (a ``state.apply`` renders map.jinja once per SLS file
    that imports it) the result is computed once per pillar and kept in ``__context__``: the data files are fetched
    and parsed and the settings validated once, not once per SLS file; every caller gets its own copy.

    fetch
        False: read the three data files from this minion's file cache as its last render left them, without asking
        the fileserver (three round trips, each signed with the minion's key). The CA minion answers peer-publish
        requests this way: every orchestration renders on it (validation, CAs) before any node asks, and the pillar
        -- who may hold what -- is read fresh all the same.

    CLI Example:

    .. code-block:: bash

        salt-call k8s.resolve
        salt-call k8s.resolve validate=False
    """
    # Read as a template reads it: Salt 3008 masks pillar values that leave a job through pillar.get.
    pillar = _unmasked(__pillar__.get("k8s") or {})
    minion_id = __opts__["id"]
    key = ("kubesalt.resolve", saltenv, bool(validate), minion_id, json.dumps(pillar, sort_keys=True, default=repr))
    if key not in __context__:
        files = _formula_data(saltenv, fetch)
        __context__[key] = settings(
            files["defaults"].get("k8s") or {},
            files["profiles"],
            pillar,
            files["catalogue"],
            minion_id=minion_id,
            validate=validate,
        )
    return copy.deepcopy(__context__[key])


def config(validate=False, fetch=True):
    """
    Return this minion's resolved kubesalt settings, exactly as every SLS sees them (:py:func:`resolve`, which
    ``k8s/map.jinja`` calls). With ``validate=True`` an invalid configuration raises an error listing every problem;
    ``fetch=False``: see :py:func:`resolve`.

    CLI Example:

    .. code-block:: bash

        salt-call k8s.config
        salt 'master01' k8s.config --out=yaml
    """
    return resolve(validate=validate, fetch=fetch)


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


def operation(op=None):
    """
    The arguments of a day-2 orchestration (``k8s.etcd.member``, ``k8s.etcd.restore``, ``k8s.node.remove``,
    ``k8s.upgrade``), which hand them to the nodes as the pillar ``k8s_op``: ``node``, ``replace``, ``seed`` (minion
    ids), ``snapshot`` (an absolute path, or ``latest``), ``drain_timeout`` (seconds), ``nodes`` (a list of minion
    ids). Every key is optional here (each orchestration
    requires its own); a wrong type or an unknown key raises, naming ``k8s_op:<key>``, so nothing is changed.
    ``formulas/k8s/map.jinja`` calls it and exports the result as ``op``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s.operation '{node: worker02, drain_timeout: 120}'
    """
    op = {} if op in (None, "") else op
    problems = [p.replace("k8s:", "k8s_op:", 1) for p in schema.OPERATION.errors(op, "")]
    if problems:
        raise CommandExecutionError(
            "kubesalt: invalid operation arguments (nothing was changed):\n  - " + "\n  - ".join(problems)
        )
    return {key: op.get(key) for key in schema.OPERATION.fields}


def _minion_age(pid=None, proc="/proc"):
    """Seconds since the salt-minion this job runs under started: the oldest ancestor of this process (or of ``pid``)
    whose command line names salt-minion."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"{proc}/uptime", encoding="ascii") as fh:
        uptime = float(fh.read().split()[0])
    oldest, pid = None, pid or os.getpid()
    while pid > 1:
        try:
            with open(f"{proc}/{pid}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"{proc}/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            break
        if "salt-minion" in cmdline:
            oldest = uptime - int(fields[19]) / ticks
        pid = int(fields[1])
    return oldest


def boot_converge(max_age=600):
    """
    Run highstate on this minion when its salt-minion started less than ``max_age`` seconds ago; otherwise change
    nothing. kubesalt's reactor (``k8s/reactor/converge.sls``) calls this on the minion named in a
    ``salt/minion/<id>/start`` event. Any minion can fire an event with that tag for another one, but only the named
    minion answers here, from its own process table: a forged start event converges nobody.

    CLI Example:

    .. code-block:: bash

        salt worker01 k8s.boot_converge
    """
    age = _minion_age()
    if age is None or age > float(max_age):
        what = "not found" if age is None else f"running for {age:.0f} s"
        log.warning("kubesalt: start event for this minion ignored: its salt-minion is %s (limit %s s)", what, max_age)
        return {"converged": False, "minion_age": age, "comment": f"salt-minion {what}; no highstate"}
    return {"converged": True, "minion_age": age, "highstate": __salt__["state.highstate"]()}
