"""
kubesalt's decisions about etcd membership, as plain functions of what the cluster answered: which member is
which, whether a removal keeps the quorum, how a member with an empty data directory starts (``new`` or
``existing``), and which members of ``k8s:nodes`` do not vote yet. ``k8s_etcd`` (the execution module) asks etcd and
wraps these for Salt; its docstrings say what each answer means.

A member is a :py:meth:`kubesalt.etcd.EtcdClient.member_list` entry (``id``, ``name``, ``peer_urls``,
``client_urls``, ``is_learner``); a health report a :py:meth:`~kubesalt.etcd.EtcdClient.cluster_health` answer.
"""

import os
import re

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import data


def find_member(members, name):
    """The member called ``name`` (its name, hex id or one of its peer URLs), or None."""
    for member in members:
        if name in (member["name"], member["id"]) or name in member["peer_urls"]:
            return member
    return None


def started(member):
    """Whether ``member`` has ever started: a started member publishes its client URLs. Its name says nothing: the
    members of a first bootstrap are listed by name before they start."""
    return bool(member["client_urls"])


def health_summary(health):
    if not health:
        return "no report"
    return f"healthy: {', '.join(health['healthy']) or 'none'}; unhealthy: {', '.join(health['unhealthy']) or 'none'}"


def removal_problem(report, name):
    """Why removing member ``name`` would cost the cluster of health ``report`` its quorum, or None when it is safe."""
    if name in report["learners"]:
        return None
    voters = report["healthy"] + report["unhealthy"]
    remaining = [v for v in voters if v != name]
    if not remaining:
        return f"{name} is the cluster's last voting member"
    healthy = [h for h in report["healthy"] if h != name]
    need = len(remaining) // 2 + 1
    if len(healthy) < need:
        down = ", ".join(u for u in report["unhealthy"] if u != name) or "none"
        return (
            f"removing {name} would lose quorum: {len(healthy)} of the {len(remaining)} remaining voting members are "
            f"healthy and {need} are needed (unhealthy: {down}); bring members back first"
        )
    return None


def lead_elsewhere(client, member, health):
    """When ``member`` (healthy) leads, hand the leadership to a healthy voting member first and return its name:
    removing the leader costs the cluster an election (a second or more without writes or quorum reads)."""
    status = client.status_of(member["client_urls"][0].rstrip("/")) if member["client_urls"] else {}
    if not status.get("is_leader"):
        return None
    others = [n for n in health["healthy"] if health["members"][n]["id"] != member["id"]]
    if not others:
        return None
    target = others[0]
    client.move_leader(member, health["members"][target]["id"])
    return target


def to_remove(wanted_peer_urls, members):
    """The ``members`` none of whose peer URLs is wanted, each with ``label`` (its name, or its id when it has
    none)."""
    wanted = set(wanted_peer_urls)
    return [dict(m, label=m["name"] or m["id"]) for m in members if not wanted.intersection(m["peer_urls"])]


def not_voting(peers, members):
    """``{name: reason}`` for each of ``peers`` (``{name: peer URL}``) that is not a started voting member."""
    problems = {}
    for name, peer_url in peers.items():
        member = find_member(members, peer_url)
        if member is None:
            problems[name] = "not a member of the cluster"
        elif not started(member):
            problems[name] = "added but not started"
        elif member["is_learner"]:
            problems[name] = "a learner, not promoted yet"
    return problems


def restore_seed(cluster, seed=None):
    """The member a restore starts from, of the derived ``cluster`` settings (see ``k8s_etcd.restore_seed``)."""
    if seed:
        if seed not in cluster["etcd_members"]:
            raise SaltInvocationError(
                f"k8s_op:seed: '{seed}' is not an etcd member of k8s:nodes ({', '.join(cluster['etcd_members'])})"
            )
        return seed
    if cluster["ca_minion"] in cluster["etcd_members"]:
        return cluster["ca_minion"]
    if not cluster["etcd_members"]:
        raise SaltInvocationError("k8s:nodes has no etcd member to restore onto")
    return cluster["etcd_members"][0]


def holds_member(data_dir):
    """Whether ``data_dir`` holds an initialised etcd member (a write-ahead log in ``member/wal``)."""
    wal = os.path.join(str(data_dir), "member", "wal")
    try:
        return any(name.endswith(".wal") for name in os.listdir(wal))
    except OSError:
        return False


def decide_initial_cluster(name, peer_url, inventory, members=None, health=None, restoring=False):
    """How member ``name`` with an empty data directory starts; the rules are in ``k8s_etcd.decide_initial_cluster``,
    which documents this function."""
    inventory = dict(inventory)
    if members is None:
        if restoring:
            raise CommandExecutionError(
                f"etcd member {name} was cleared for a restore and no other member answers: start the restored "
                "member first (salt-run state.orchestrate k8s.etcd.restore does), then this one joins it"
            )
        return {"state": "new", "initial_cluster": inventory, "join": False, "promote_first": []}
    me = find_member(members, peer_url)
    if not (health or {}).get("quorum"):
        if me is not None and not started(me) and not restoring:
            return {"state": "new", "initial_cluster": inventory, "join": False, "promote_first": []}
        raise CommandExecutionError(
            f"etcd answers but has no quorum ({health_summary(health)}): member {name} cannot join now"
        )
    if me is not None and started(me):
        raise CommandExecutionError(
            f"etcd member {name} is registered and started in the running cluster, but its data directory is empty "
            "(its data was lost): replace it -- salt-run state.orchestrate k8s.etcd.member "
            f'pillar=\'{{"replace": "{name}"}}\''
        )
    initial = {}
    for member in members:
        if member is me:
            continue
        if not member["name"]:
            raise CommandExecutionError(
                f"etcd member {', '.join(member['peer_urls'])} was added but has not started yet; etcd joins one "
                f"member at a time: start that one (or remove it) before {name}"
            )
        initial[member["name"]] = member["peer_urls"][0]
    initial[name] = peer_url
    learners = sorted(m["name"] for m in members if m is not me and m["is_learner"]) if me is None else []
    return {"state": "existing", "initial_cluster": initial, "join": me is None, "promote_first": learners}


def first_start_env(decision):
    """The environment file that carries a first-start ``decision`` to etcd (see ``k8s_etcd.first_start_env``)."""
    if decision.get("state") not in ("new", "existing"):
        raise SaltInvocationError(f"first-start state {decision.get('state')!r} must be new or existing")
    initial = decision.get("initial_cluster") or {}
    for name, url in initial.items():
        if not (data.is_dns_name(str(name)) and re.fullmatch(r"https://[0-9A-Za-z.:\[\]-]+", str(url))):
            raise SaltInvocationError(f"etcd initial cluster member {name!r}={url!r} is not a node name=https URL")
    if not initial:
        raise SaltInvocationError("an etcd initial cluster needs at least one member")
    return (
        "# kubesalt: this member's first start (etcd reads it only while its data directory is empty)\n"
        f"ETCD_INITIAL_CLUSTER={','.join(f'{name}={url}' for name, url in initial.items())}\n"
        f"ETCD_INITIAL_CLUSTER_STATE={decision['state']}\n"
    )
