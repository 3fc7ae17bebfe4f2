"""
The cluster's topology, computed once from the settings: who has which role, the etcd members' URLs, the API server
each node talks to, each node's pod subnet. ``k8s.settings`` stores the result under ``config["cluster"]``, and
every consumer (SLS files through ``k8s/map.jinja``, ``k8s_conf``, ``k8s_kube``, ``k8s_etcd``, ``k8s_pki``) reads it
from there or calls the functions below -- nobody derives these facts again.

Security note: roles, addresses and etcd membership come from the ``k8s:nodes`` pillar, keyed by minion id, never
from grains (a minion sets its own grains).
"""

import copy
import ipaddress

from kubesalt import data


def roles_of(node):
    """The roles of one ``k8s:nodes`` entry, as a list."""
    roles = (node.get("roles") or []) if isinstance(node, dict) else []
    if isinstance(roles, str):
        return [roles]
    return [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else []


def url(host, port, scheme="https"):
    """``https://host:port``, with an IPv6 address in brackets."""
    host = str(host)
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def node_pod_cidr(config, minion_id):
    """
    The pod subnet of one node: its pinned ``pod_cidr``, or the subnet of ``networks:pod_cidr`` (at
    ``node_pod_prefix``) whose index is the node's host number inside ``networks:node_cidr``. Deriving it from the
    node's address keeps it stable when nodes are added or removed. None if it cannot be computed.
    """
    node = (config.get("nodes") or {}).get(minion_id) or {}
    if not isinstance(node, dict):
        return None
    if node.get("pod_cidr"):
        return str(node["pod_cidr"])
    nets = config.get("networks") or {}
    pod, node_net, address = data.net(nets.get("pod_cidr")), data.net(nets.get("node_cidr")), data.ip(node.get("ip"))
    prefix = nets.get("node_pod_prefix")
    if (
        not (pod and node_net and address and isinstance(prefix, int))
        or address not in node_net
        or prefix < pod.prefixlen
    ):
        return None
    index = int(address) - int(node_net.network_address)
    if index >= 2 ** (prefix - pod.prefixlen):
        return None
    size = 2 ** (pod.max_prefixlen - prefix)
    return str(ipaddress.ip_network((int(pod.network_address) + index * size, prefix)))


def local_api_url(config):
    """The API server of a master, seen from the master itself."""
    return url("127.0.0.1", _section(config, "apiserver").get("port"))


def apiserver_url(config):
    """The API address for clients off the masters: ``k8s:apiserver:endpoint``, or the first master."""
    endpoint = _section(config, "apiserver").get("endpoint")
    if endpoint:
        return str(endpoint).rstrip("/")
    masters = _ids_with(config, "master")
    address = ((config.get("nodes") or {}).get(masters[0]) or {}).get("ip") if masters else None
    return url(address, _section(config, "apiserver").get("port")) if address else ""


def balancer_url(config):
    """The node-local API load balancer (``k8s:api_balancer``), or "" when it is off."""
    balancer = _section(config, "api_balancer")
    return url("127.0.0.1", balancer.get("port")) if balancer.get("enabled") else ""


def api_url_for(config, minion_id):
    """
    The API server kubesalt's own calls on node ``minion_id`` use: a master its own (whose readiness they check),
    any other node the node-local balancer, or without one :py:func:`apiserver_url`.
    """
    roles = roles_of((config.get("nodes") or {}).get(minion_id))
    if "master" in roles:
        return local_api_url(config)
    return (balancer_url(config) if "worker" in roles else "") or apiserver_url(config)


def daemon_api_url(config, minion_id):
    """
    The API server in the kubeconfigs of node ``minion_id``'s daemons (kubelet, kube-proxy, flanneld and a master's
    controller-manager and scheduler): the node-local balancer, so that they keep working while any one master is
    down; without it, :py:func:`api_url_for`.
    """
    roles = roles_of((config.get("nodes") or {}).get(minion_id))
    return (balancer_url(config) if {"master", "worker"} & set(roles) else "") or api_url_for(config, minion_id)


def admin_api_url(config, minion_id):
    """The API server in the admin kubeconfigs (copied to people's machines): ``k8s:apiserver:endpoint`` when set,
    otherwise what the CA minion's daemons use."""
    return str(_section(config, "apiserver").get("endpoint") or "").rstrip("/") or daemon_api_url(config, minion_id)


def etcd_client_urls(config):
    """The client URL of every etcd member, in member order."""
    nodes, port = config.get("nodes") or {}, _section(config, "etcd").get("client_port")
    return [url(nodes[m]["ip"], port) for m in _ids_with(config, "etcd")]


def etcd_peer_urls(config):
    """``{member: peer URL}`` of every etcd member."""
    nodes, port = config.get("nodes") or {}, _section(config, "etcd").get("peer_port")
    return {m: url(nodes[m]["ip"], port) for m in _ids_with(config, "etcd")}


def _section(config, key):
    """A settings section; {} when a (not yet validated) pillar replaced it with something else."""
    section = config.get(key)
    return section if isinstance(section, dict) else {}


def _ids_with(config, role):
    nodes = config.get("nodes") or {}
    return [n for n in sorted(str(k) for k in nodes) if role in roles_of(nodes[n])]


def derive(config, minion_id=None):
    """
    Store the derived facts under ``config["cluster"]`` and return ``config``:

    - ``masters``, ``workers``, ``etcd_members``, ``nodes`` (masters and workers): minion ids, sorted;
    - ``ca_minion`` (``k8s:pki:ca_minion`` or the first master), ``api_service_ip`` (first address of the service
      network), ``pod_cidrs`` (minion id -> pod subnet), ``apiserver_url`` (for clients off the masters),
      ``balancer_url`` (the node-local API balancer, or "" when it is off),
      ``etcd_client_urls``, ``etcd_local_url`` (a member's own client URL on loopback), ``etcd_peer_url`` and
      ``etcd_client_url`` (this minion's, when it is an etcd member), ``etcd_other_client_urls`` (every other
      member's: where a member asks about itself -- a learner answers nothing but its status),
      ``etcd_restart_marker`` (the file that asks ``k8s.etcd.restart`` to restart a member), ``etcd_restore_marker``
      (the file that says which snapshot ``k8s.etcd.restore`` is restoring, while it runs);
    - about this minion (``minion_id``): ``node`` (its inventory entry, or {}), ``roles`` and ``is_master``,
      ``is_worker``, ``is_etcd``, ``is_node`` (master or worker), ``is_ca``, and ``api_url`` (the API server it
      talks to).
    """
    nodes = config.get("nodes") or {}
    masters = _ids_with(config, "master")
    workers = _ids_with(config, "worker")
    service = data.net((config.get("networks") or {}).get("service_cidr"))
    me = str(minion_id or "")
    node = nodes.get(me) if isinstance(nodes.get(me), dict) else {}
    roles = roles_of(node)
    ca_minion = (config.get("pki") or {}).get("ca_minion") or (masters[0] if masters else "")
    valid = all(isinstance(n, dict) and data.ip(n.get("ip")) for n in nodes.values())
    client_urls = etcd_client_urls(config) if valid else []
    my_client_url = url(node["ip"], _section(config, "etcd").get("client_port")) if valid and "etcd" in roles else ""
    cluster = {
        "masters": masters,
        "workers": workers,
        "etcd_members": _ids_with(config, "etcd"),
        "nodes": sorted(set(masters) | set(workers)),
        "ca_minion": ca_minion,
        "api_service_ip": str(next(service.hosts())) if service and service.num_addresses > 2 else "",
        "pod_cidrs": {n: node_pod_cidr(config, n) for n in sorted(str(k) for k in nodes)},
        "apiserver_url": apiserver_url(config) if valid else "",
        "balancer_url": balancer_url(config),
        "etcd_client_urls": client_urls,
        "etcd_local_url": url("127.0.0.1", _section(config, "etcd").get("client_port")),
        "etcd_peer_url": (etcd_peer_urls(config).get(me, "") if valid else ""),
        "etcd_client_url": my_client_url,
        "etcd_other_client_urls": [u for u in client_urls if u != my_client_url],
        "etcd_restart_marker": f"{_section(config, 'paths').get('etcd_data_dir')}.restart-pending",
        "etcd_restore_marker": f"{_section(config, 'paths').get('etcd_data_dir')}.restore-pending",
        "minion_id": me,
        "node": copy.deepcopy(node),
        "roles": roles,
        "is_master": "master" in roles,
        "is_worker": "worker" in roles,
        "is_etcd": "etcd" in roles,
        "is_node": "master" in roles or "worker" in roles,
        "is_ca": bool(me) and me == ca_minion,
        "api_url": (api_url_for(config, me) if me in nodes else apiserver_url(config)) if valid else "",
    }
    config["cluster"] = cluster
    return config
