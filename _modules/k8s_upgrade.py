"""
kubesalt rolling upgrades: the version-skew preflight and the node steps of ``salt-run state.orchestrate
k8s.upgrade`` (``formulas/k8s/upgrade.sls``).

The pure core -- :py:func:`skew_problems`, :py:func:`health_problems`, :py:func:`plan` -- judges plain data: the
versions the pillar asks for (:py:func:`targets`) against what the running cluster reports (:py:func:`observe`:
every master's API server ``/version`` and ``/readyz``, every Node object, every etcd member's status and health).
The Salt glue at the edge runs on the CA minion, the one minion with the admin certificate.

A node's progress is kept on its Node object, so an interrupted upgrade continues where it stopped:

- ``kubesalt.io/upgrade-cordoned``: set just before the upgrade cordons the node (``true``; ``by-hand`` when it was
  cordoned already); the node is finished (Ready, uncordoned unless ``by-hand``, the annotation removed) by this run
  or the next. A node cordoned by hand stays cordoned.
- ``kubesalt.io/upgraded-to``: the node components it was last upgraded to (:py:func:`fingerprint`); a node whose
  annotation matches the pillar is skipped (not drained).
"""

import logging
import re

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "k8s_upgrade"

CORDONED = "kubesalt.io/upgrade-cordoned"
UPGRADED_TO = "kubesalt.io/upgraded-to"
# The node components a node upgrade installs (k8s.node: runtime, kubelet, kube-proxy); their pillar versions make
# a node's fingerprint.
NODE_COMPONENTS = ("kubernetes", "containerd", "runc", "cni_plugins", "crictl")
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


def __virtual__():
    return __virtualname__


# --------------------------------------------------------------------------------------------------------------------
# Pure core
# --------------------------------------------------------------------------------------------------------------------
def parse_version(text):
    """
    ``"v1.20.2"``, ``"1.20.2-kubesalt"`` -> ``(1, 20, 2)``, ``"containerd://1.7.24"`` -> ``(1, 7, 24)``; None for
    anything else.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.parse_version v1.20.2
    """
    match = _VERSION.search(str(text or "").rsplit("/", 1)[-1])
    return tuple(int(p) for p in match.groups()) if match else None


def _text(version):
    return ".".join(map(str, version)) if version else "unknown"


def kubelet_skew(minor):
    """
    How many minors a kubelet may be older than the API server of minor ``minor`` (``(1, 37)``): the version-skew
    policy allows 3 from 1.28 on, 2 before.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.kubelet_skew '[1, 37]'
    """
    return 3 if tuple(minor[:2]) >= (1, 28) else 2


def fingerprint(versions):
    """
    The node components' versions (``versions``: ``k8s:versions``) as one annotation value, e.g.
    ``cni_plugins=1.9.1,containerd=1.7.24,...``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.fingerprint '{kubernetes: 1.37.1, containerd: 2.3.6}'
    """
    return ",".join(f"{c}={versions.get(c)}" for c in sorted(NODE_COMPONENTS) if versions.get(c))


def targets(config):
    """
    The versions an upgrade goes to: ``k8s:versions`` of the settings, plus ``fingerprint`` (see
    :py:func:`fingerprint`).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.targets "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    versions = {k: str(v) for k, v in (config.get("versions") or {}).items() if v}
    return dict(versions, fingerprint=fingerprint(versions))


def skew_problems(target, observed):
    """
    What the version-skew policy forbids in going from ``observed`` to ``target`` (``{"kubernetes", "etcd"}``
    versions), one message per problem naming the node and the versions:

    - Kubernetes: a downgrade of any API server, or a step of more than one minor (1.35 -> 1.37 skips 1.36); API
      servers more than one minor apart;
    - kubelets: one newer than the oldest API server, one newer than the target, one more minors behind the target
      than the policy allows (:py:func:`kubelet_skew`);
    - etcd: a downgrade of any member, a step of more than one minor, another major version.

    ``observed``: ``{"apiservers": {master: version}, "kubelets": {node: version}, "etcd": {member: version}}``;
    a version that could not be read (None) is a health problem, not judged here.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.skew_problems '{kubernetes: 1.37.1, etcd: 3.6.14}' \\
            '{apiservers: {m1: 1.35.2}, kubelets: {w1: 1.35.2}, etcd: {m1: 3.6.5}}'
    """
    problems = []
    want = parse_version(target.get("kubernetes"))
    apis = {n: parse_version(v) for n, v in sorted((observed.get("apiservers") or {}).items())}
    apis = {n: v for n, v in apis.items() if v}
    if want:
        for node, have in apis.items():
            if want < have:
                problems.append(
                    f"Kubernetes {_text(want)} (k8s:versions:kubernetes) is older than the API server on {node} "
                    f"({_text(have)}): downgrades are not supported"
                )
            elif want[:2] > (have[0], have[1] + 1):
                problems.append(
                    f"Kubernetes {_text(want)} (k8s:versions:kubernetes) skips a minor: the API server on {node} runs "
                    f"{_text(have)}; upgrade to {have[0]}.{have[1] + 1} first (one minor at a time)"
                )
        if apis:
            low = min(apis.items(), key=lambda item: item[1])
            high = max(apis.items(), key=lambda item: item[1])
            if high[1][1] - low[1][1] > 1 or high[1][0] != low[1][0]:
                problems.append(
                    f"API servers more than one minor apart: {low[0]} runs {_text(low[1])}, {high[0]} {_text(high[1])}"
                )
        oldest = min(apis.items(), key=lambda item: item[1]) if apis else None
        for node, text in sorted((observed.get("kubelets") or {}).items()):
            have = parse_version(text)
            if not have:
                continue
            if oldest and have > oldest[1]:
                problems.append(
                    f"the kubelet on {node} ({_text(have)}) is newer than the API server on {oldest[0]} "
                    f"({_text(oldest[1])}): the control plane must be upgraded first"
                )
            elif have > want:
                problems.append(
                    f"the kubelet on {node} ({_text(have)}) is newer than Kubernetes {_text(want)} "
                    "(k8s:versions:kubernetes): downgrades are not supported"
                )
            elif have[0] != want[0] or want[1] - have[1] > kubelet_skew(want):
                problems.append(
                    f"the kubelet on {node} ({_text(have)}) is more than {kubelet_skew(want)} minors older than "
                    f"Kubernetes {_text(want)}: upgrade the cluster a minor at a time"
                )
    want = parse_version(target.get("etcd"))
    if want:
        for member, text in sorted((observed.get("etcd") or {}).items()):
            have = parse_version(text)
            if not have:
                continue
            if want < have:
                problems.append(
                    f"etcd {_text(want)} (k8s:versions:etcd) is older than member {member} ({_text(have)}): "
                    "etcd downgrades are not supported"
                )
            elif want[0] != have[0]:
                problems.append(
                    f"etcd {_text(want)} (k8s:versions:etcd) is another major version than member {member} "
                    f"({_text(have)})"
                )
            elif want[1] > have[1] + 1:
                problems.append(
                    f"etcd {_text(want)} (k8s:versions:etcd) skips a minor: member {member} runs {_text(have)}; "
                    f"upgrade to {have[0]}.{have[1] + 1} first (one minor at a time)"
                )
    return problems


def health_problems(observed, inventory):
    """
    Why the cluster is not healthy enough to upgrade, one message per problem: an etcd member of the inventory that
    is missing, a learner or unhealthy, or whose version cannot be read; an API server that is not ready or whose
    version cannot be read; a node that is not registered or not Ready. A node the upgrade itself cordoned
    (an interrupted run) may be NotReady: this run finishes it.

    ``inventory``: ``{"masters", "nodes", "etcd_members"}`` (minion ids, from the derived settings);
    ``observed``: see :py:func:`observe`.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.health_problems "$(salt-call --out=json k8s_upgrade.observe | jq -c .local)" \\
            '{masters: [m1], nodes: [m1, w1], etcd_members: [m1]}'
    """
    problems = list(observed.get("errors") or [])
    etcd = observed.get("etcd_health") or {}
    if etcd.get("error"):
        problems.append(f"etcd: {etcd['error']}")
    members = etcd.get("members") or {}
    for member in inventory.get("etcd_members") or []:
        entry = members.get(member)
        if entry is None and not etcd.get("error"):
            problems.append(f"etcd member {member} is not in the member list (k8s.etcd.member adds it)")
        elif entry and entry.get("learner"):
            problems.append(f"etcd member {member} is a learner still catching up; wait for its promotion")
        elif entry and not entry.get("healthy"):
            problems.append(f"etcd member {member} is not healthy: {entry.get('error') or 'no answer'}")
        elif entry and not (observed.get("etcd") or {}).get(member):
            problems.append(f"etcd member {member}: its version cannot be read")
    for master in inventory.get("masters") or []:
        ready = (observed.get("readyz") or {}).get(master) or {}
        if not ready.get("ready"):
            problems.append(f"the API server on {master} is not ready: {ready.get('error') or 'no answer'}")
        elif not (observed.get("apiservers") or {}).get(master):
            problems.append(f"the API server on {master}: its version cannot be read")
    nodes = observed.get("nodes") or {}
    for name in inventory.get("nodes") or []:
        node = nodes.get(name)
        if observed.get("errors"):
            break  # the Node objects could not be read: said once above
        if node is None:
            problems.append(f"node {name} is not registered (converge it with k8s.cluster first)")
        elif not node["ready"] and not node["upgrade_cordoned"]:
            problems.append(f"node {name} is NotReady: {node['reason']} ({node['message']})")
    return problems


def node_pending(node, target):
    """
    Whether node ``node`` (an entry of ``observe()["nodes"]``; None: not registered) still has to go through the
    node upgrade: cordoned by an interrupted upgrade, or not yet upgraded to ``target["fingerprint"]``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.node_pending "$(salt-call --out=json k8s_upgrade.observe | jq -c .local.nodes.w1)" \
            "$(salt-call --out=json k8s_upgrade.targets ... | jq -c .local)"
    """
    return bool(node is None or node["upgrade_cordoned"] or node["upgraded_to"] != target["fingerprint"])


def plan(target, observed, inventory):
    """
    What ``k8s.upgrade`` does, phase by phase: ``etcd`` (``{member: "3.4.23 -> 3.5.16"}``, the members not at the
    target), ``control_plane`` (``{master: "1.36.4 -> 1.37.1"}``), ``nodes`` (``{node: why}``, the nodes to be
    cordoned, drained, upgraded and uncordoned), ``skipped`` (nodes already at the target), ``snapshot`` (whether
    the etcd snapshot is taken: when anything is to be done) and ``fingerprint``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.plan "$(salt-call --out=json k8s_upgrade.targets ... | jq -c .local)" ...
    """
    result = {"etcd": {}, "control_plane": {}, "nodes": {}, "skipped": [], "fingerprint": target["fingerprint"]}
    want = target.get("etcd")
    for member, have in sorted((observed.get("etcd") or {}).items()):
        if parse_version(have) != parse_version(want):
            result["etcd"][member] = f"{_text(parse_version(have))} -> {want}"
    want = target.get("kubernetes")
    for master in inventory.get("masters") or []:
        have = (observed.get("apiservers") or {}).get(master)
        if parse_version(have) != parse_version(want):
            result["control_plane"][master] = f"{_text(parse_version(have))} -> {want}"
    nodes = observed.get("nodes") or {}
    for name in inventory.get("nodes") or []:
        node = nodes.get(name)
        if not node_pending(node, target):
            result["skipped"].append(name)
        elif node and node["upgrade_cordoned"]:
            result["nodes"][name] = "cordoned by an interrupted upgrade: finish it"
        else:
            was = (node or {}).get("upgraded_to") or "never upgraded by k8s.upgrade"
            result["nodes"][name] = f"{was} -> {target['fingerprint']}"
    result["snapshot"] = bool(result["etcd"] or result["control_plane"] or result["nodes"])
    return result


def describe(result):
    """The plan (see :py:func:`plan`) as text, one line per step, for the orchestration's output.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.describe "$(salt-call --out=json k8s_upgrade.preflight | jq -c .local)"
    """
    lines = [f"etcd snapshot: {'taken first' if result['snapshot'] else 'not needed (nothing to upgrade)'}"]
    for title, key in (("etcd member", "etcd"), ("control plane", "control_plane"), ("node", "nodes")):
        for name, what in result[key].items():
            lines.append(f"{title} {name}: {what}")
    if result["skipped"]:
        lines.append(f"nodes already at {result['fingerprint']}: {', '.join(result['skipped'])}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# Salt glue (on the CA minion: the admin certificate)
# --------------------------------------------------------------------------------------------------------------------
def _config(config):
    return config if config is not None else __salt__["k8s.config"](validate=True)


def _inventory(config):
    cluster = config["cluster"]
    return {k: list(cluster[k]) for k in ("masters", "nodes", "etcd_members")}


def _node_entry(node):
    meta = node.get("metadata") or {}
    info = (node.get("status") or {}).get("nodeInfo") or {}
    annotations = meta.get("annotations") or {}
    conditions = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
    ready = conditions.get("Ready") or {}
    return {
        "ready": ready.get("status") == "True",
        "reason": ready.get("reason") or "NoReadyCondition",
        "message": ready.get("message") or "the kubelet has not reported a Ready condition",
        "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
        "kubelet": info.get("kubeletVersion") or "",
        "runtime": info.get("containerRuntimeVersion") or "",
        "upgrade_cordoned": CORDONED in annotations,
        "cordoned_by_upgrade": annotations.get(CORDONED) == "true",
        "upgraded_to": annotations.get(UPGRADED_TO) or "",
    }


def observe(config=None):
    """
    What the running cluster reports, read from the CA minion: ``apiservers`` and ``readyz`` (each master's own API
    server), ``nodes`` (every Node object: Ready, kubelet and runtime versions, the upgrade annotations),
    ``kubelets``, ``etcd`` (each member's server version) and ``etcd_health``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.observe
    """
    config = _config(config)
    cluster = config["cluster"]
    nodes_conf = config.get("nodes") or {}
    port = (config.get("apiserver") or {}).get("port")
    observed = {
        "apiservers": {},
        "readyz": {},
        "nodes": {},
        "kubelets": {},
        "etcd": {},
        "etcd_health": {},
        "errors": [],
    }
    for master in cluster["masters"]:
        # each master's own API server; this minion's own as its own calls reach it
        server = cluster["api_url"] if master == cluster["minion_id"] else f"https://{nodes_conf[master]['ip']}:{port}"
        try:
            observed["readyz"][master] = __salt__["k8s_kube.readyz"](config, identity="admin", server=server)
            if observed["readyz"][master]["ready"]:
                version = __salt__["k8s_kube.server_version"](config, identity="admin", server=server)
                observed["apiservers"][master] = version
        except (CommandExecutionError, SaltInvocationError) as exc:
            observed["readyz"][master] = {"ready": False, "error": str(exc)}
    try:
        for node in __salt__["k8s_kube.get"](config, "Node"):
            name = (node.get("metadata") or {}).get("name")
            observed["nodes"][name] = _node_entry(node)
            observed["kubelets"][name] = observed["nodes"][name]["kubelet"]
    except (CommandExecutionError, SaltInvocationError) as exc:
        observed["errors"].append(f"the Node objects cannot be read: {exc}")
    if cluster["etcd_members"]:
        try:
            health = __salt__["k8s_etcd.cluster_health"]()
        except (CommandExecutionError, SaltInvocationError) as exc:
            health = {"error": str(exc), "members": {}}
        observed["etcd_health"] = health
        urls = [m["endpoint"] for m in health.get("members", {}).values() if m.get("endpoint")]
        status = __salt__["k8s_etcd.endpoint_status"](endpoints=urls) if urls else {}
        for name, member in health.get("members", {}).items():
            observed["etcd"][name] = (status.get(member.get("endpoint")) or {}).get("version") or ""
    return observed


def preflight(config=None, observed=None):
    """
    Check that ``k8s.upgrade`` may go to the pillar's versions, and return its plan (see :py:func:`plan`).
    Raises CommandExecutionError listing every problem, each naming the node and the versions, when the
    version-skew policy forbids the step (:py:func:`skew_problems`) or the cluster is not healthy
    (:py:func:`health_problems`). Runs on the CA minion; changes nothing.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.preflight
    """
    config = _config(config)
    if not config["cluster"]["is_ca"]:
        raise SaltInvocationError(
            f"k8s_upgrade.preflight runs on the CA minion ({config['cluster']['ca_minion']}), which holds the admin "
            "certificate"
        )
    target = targets(config)
    observed = observed if observed is not None else observe(config)
    inventory = _inventory(config)
    problems = health_problems(observed, inventory) + skew_problems(target, observed)
    if problems:
        raise CommandExecutionError(
            "kubesalt: the upgrade is refused (nothing was changed):\n  - " + "\n  - ".join(problems)
        )
    return plan(target, observed, inventory)


def nodes_pending(config, names, identity="admin"):
    """
    Which of the nodes ``names`` still have to go through the node upgrade (see :py:func:`node_pending`), read from
    their Node objects: on the CA minion with ``identity=admin``, on a node about itself with ``identity=kubelet``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.nodes_pending "$(salt-call --out=json k8s.config | jq -c .local)" '[worker01]'
    """
    target = targets(config)
    pending = []
    for name in names or []:
        node = __salt__["k8s_kube.get"](config, "Node", name, identity=identity)
        if node_pending(_node_entry(node) if node else None, target):
            pending.append(name)
    return pending


def begin_node(config, name, timeout=None, test=False):
    """
    Start the upgrade of node ``name``: mark it (annotation ``kubesalt.io/upgrade-cordoned``), then cordon and
    drain it (``k8s_kube.drain``: PodDisruptionBudgets honoured, up to ``timeout`` seconds) -- unless it is upgraded
    to the pillar's versions already (``upgraded: True``, nothing done). Returns ``{"marked": bool, "cordoned":
    bool, "evicted": [...], "skipped": [...], "upgraded": bool}``; ``test=True`` only reads.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.begin_node "$(salt-call --out=json k8s.config | jq -c .local)" worker01
    """
    node = __salt__["k8s_kube.get"](config, "Node", name)
    if node is None:
        raise CommandExecutionError(f"Node {name} is not registered: nothing to upgrade there")
    entry = _node_entry(node)
    if not node_pending(entry, targets(config)):
        return {"marked": False, "cordoned": False, "evicted": [], "skipped": [], "upgraded": True}
    result = {"marked": not entry["upgrade_cordoned"], "upgraded": False}
    if result["marked"] and not test:
        # The mark goes first: a run stopped between here and the drain leaves a node the next run finishes. A node
        # cordoned by hand before the upgrade is marked "by-hand": it stays cordoned afterwards.
        mark = "by-hand" if entry["unschedulable"] else "true"
        __salt__["k8s_kube.node_patch"](config, name, annotations={CORDONED: mark})
    drained = __salt__["k8s_kube.drain"](config, name, timeout=timeout, test=test)
    result.update({k: drained[k] for k in ("cordoned", "evicted", "skipped")})
    return result


def finish_node(config, name, timeout=None, test=False):
    """
    Finish the upgrade of node ``name``: wait until it is Ready and its kubelet reports the target Kubernetes
    version (up to ``timeout`` seconds, default ``k8s:timeouts:node_ready``), then uncordon it if the upgrade
    cordoned it, remove the mark and record the node components' versions (annotation ``kubesalt.io/upgraded-to``).
    Returns ``{"uncordoned": bool, "upgraded_to": fingerprint or None (unchanged)}``; ``test=True`` only reads.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_upgrade.finish_node "$(salt-call --out=json k8s.config | jq -c .local)" worker01
    """
    target = targets(config)
    node = __salt__["k8s_kube.get"](config, "Node", name)
    if node is None:
        raise CommandExecutionError(f"Node {name} is not registered: nothing to upgrade there")
    entry = _node_entry(node)
    result = {
        "uncordoned": entry["cordoned_by_upgrade"] and entry["unschedulable"],
        "upgraded_to": target["fingerprint"] if node_pending(entry, target) else None,
    }
    if test or not (result["uncordoned"] or result["upgraded_to"] or entry["upgrade_cordoned"]):
        return result
    __salt__["k8s_kube.nodes_ready"](config, [name], timeout=timeout)
    node = __salt__["k8s_kube.get"](config, "Node", name)
    kubelet = _node_entry(node)["kubelet"]
    if parse_version(kubelet) != parse_version(target.get("kubernetes")):
        raise CommandExecutionError(
            f"Node {name} is Ready but its kubelet reports {kubelet}, not {target.get('kubernetes')} "
            "(k8s:versions:kubernetes): left cordoned; see its k8s.node run"
        )
    annotations = {CORDONED: None, UPGRADED_TO: target["fingerprint"]}
    __salt__["k8s_kube.node_patch"](
        config, name, unschedulable=False if result["uncordoned"] else None, annotations=annotations
    )
    return result
