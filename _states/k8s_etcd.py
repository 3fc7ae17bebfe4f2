"""
kubesalt etcd states: keys written with compare-and-swap, a bounded wait for a healthy etcd quorum, and the day-2
operations: snapshots, membership (members join as learners, removal refused when it would lose quorum) and the
data-directory steps of a restore.

Every state takes the connection parameters of the ``k8s_etcd`` execution module (``endpoints``, ``ca``, ``cert``,
``key``, ``timeout``) as keyword arguments; left out, they come from ``k8s.config`` on the minion.
"""

import json
import os
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import files
from kubesalt.outcome import failed

__virtualname__ = "k8s_etcd"

_CONN_KEYS = ("endpoints", "ca", "cert", "key", "timeout")


def __virtual__():
    if "k8s_etcd.get" not in __salt__:
        return (False, "the k8s_etcd execution module is not available")
    return __virtualname__


def _ret(name):
    return {"name": name, "result": False, "changes": {}, "comment": ""}


def _conn(kwargs, keys=_CONN_KEYS):
    """The connection parameters among a state's keyword arguments; anything else (except Salt's own) is refused."""
    conn = {k: v for k, v in kwargs.items() if not k.startswith("__")}
    unknown = sorted(set(conn) - set(keys))
    if unknown:
        raise SaltInvocationError(
            f"unknown argument(s) {', '.join(unknown)}; etcd connection arguments are {', '.join(keys)}"
        )
    return conn


def key_present(name, value, json=False, only_if_absent=False, **conn):
    """
    Ensure etcd key ``name`` holds ``value``.

    The write is a compare-and-swap on the revision that was read (a create-only transaction when the key is absent),
    so a concurrent writer is never overwritten blindly: on conflict the key is re-read in the same transaction; if it
    already holds ``value`` nothing is changed, otherwise the write is retried once on the new revision, and a second
    conflict fails the state without writing.

    name
        the key; must start with '/'
    value
        the value; with ``json=True`` a mapping/list or a JSON text, compared as data (key order and whitespace do
        not count) and stored as canonical JSON
    only_if_absent
        create the key if it does not exist, never change an existing one; of several concurrent creators exactly
        one writes
    endpoints, ca, cert, key, timeout
        connection (see the ``k8s_etcd`` execution module)

    .. code-block:: yaml

        kubesalt marker in etcd:
          k8s_etcd.key_present:
            - name: /kubesalt/cluster
            - value: {name: kubesalt}
            - json: True
    """
    ret = _ret(name)
    try:
        conn = _conn(conn)
        desired = __salt__["k8s_etcd.render_value"](value, json=json, name=name)
        current = __salt__["k8s_etcd.get"](name, meta=True, **conn)
        if current is not None and only_if_absent:
            ret.update(result=True, comment=f"etcd key {name} exists; left as it is (only_if_absent)")
            return ret
        if current is not None and __salt__["k8s_etcd.same_value"](current["value"], desired, json=json):
            ret.update(result=True, comment=f"etcd key {name} already holds the value")
            return ret
        changes = {"old": current["value"] if current else None, "new": desired}
        if __opts__["test"]:
            ret.update(
                result=None, changes=changes, comment=f"etcd key {name} would be {'updated' if current else 'created'}"
            )
            return ret
        notes = []
        for attempt in (1, 2):
            if current is None:
                outcome = __salt__["k8s_etcd.cas"](name, desired, create_only=True, **conn)
            else:
                outcome = __salt__["k8s_etcd.cas"](name, desired, prev_revision=current["mod_revision"], **conn)
            if outcome["succeeded"]:
                ret.update(
                    result=True,
                    changes=changes,
                    comment=" ".join(
                        notes
                        + [f"etcd key {name} {'updated' if current else 'created'} (revision {outcome['revision']})"]
                    ),
                )
                return ret
            current = outcome["current"]
            if current is not None and only_if_absent:
                ret.update(
                    result=True,
                    comment=f"etcd key {name} was created concurrently by another writer; left "
                    "as it is (only_if_absent)",
                )
                return ret
            if current is not None and __salt__["k8s_etcd.same_value"](current["value"], desired, json=json):
                ret.update(result=True, comment=f"etcd key {name} was set to the value concurrently by another writer")
                return ret
            changes["old"] = current["value"] if current else None
            notes.append(f"etcd key {name} was changed concurrently by another writer (attempt {attempt});")
        ret["comment"] = (
            f"etcd key {name} was changed concurrently by another writer twice while writing; not overwritten. "
            f"It now holds {changes['old']!r}"
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = str(exc)
    return ret


def key_absent(name, **conn):
    """
    Ensure etcd key ``name`` does not exist.

    .. code-block:: yaml

        old marker gone from etcd:
          k8s_etcd.key_absent:
            - name: /kubesalt/old
    """
    ret = _ret(name)
    try:
        conn = _conn(conn)
        current = __salt__["k8s_etcd.get"](name, **conn)
        if current is None:
            ret.update(result=True, comment=f"etcd key {name} is already absent")
            return ret
        changes = {"old": current, "new": None}
        if __opts__["test"]:
            ret.update(result=None, changes=changes, comment=f"etcd key {name} would be deleted")
            return ret
        if __salt__["k8s_etcd.delete"](name, **conn):
            ret.update(result=True, changes=changes, comment=f"etcd key {name} deleted")
        else:
            ret.update(result=True, comment=f"etcd key {name} was deleted concurrently by another writer")
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = str(exc)
    return ret


def _describe(report):
    total = len(report["members"])
    parts = [f"{len(report['healthy'])}/{total} members healthy"]
    if report["healthy"]:
        parts[0] += f" ({', '.join(report['healthy'])})"
    for name in report["unhealthy"]:
        parts.append(
            f"unhealthy: {name} at {report['members'][name]['endpoint'] or '?'}: {report['members'][name]['error']}"
        )
    return "; ".join(parts)


def healthy(name, timeout=60, interval=2, **conn):
    """
    Wait until the etcd cluster has quorum (more than half of its members healthy), at most ``timeout`` seconds,
    probing every ``interval`` seconds. Each member is probed at its own client URLs.

    - all members healthy: result True;
    - quorum but some member down: result True, and the comment names every unhealthy member and why;
    - no quorum by the deadline: result False, naming every member's state (or every endpoint that failed).

    The deadline is checked between probes, so the state ends within ``timeout`` plus one probe (a probe is bounded
    by the per-request timeout per member). Nothing is ever changed. With ``test=True`` the cluster is probed once
    without waiting: result True if it has quorum, None otherwise.

    Here ``timeout`` is the whole wait; the connection's per-request timeout is ``request_timeout`` (default
    ``min(5, timeout)``).

    .. code-block:: yaml

        etcd quorum:
          k8s_etcd.healthy:
            - timeout: 120
    """
    ret = _ret(name)
    try:
        conn = _conn(conn, keys=("endpoints", "ca", "cert", "key", "request_timeout"))
        timeout, interval = float(timeout), max(float(interval), 0.1)
        conn["timeout"] = float(conn.pop("request_timeout", None) or min(5.0, max(timeout, 1.0)))
    except (SaltInvocationError, TypeError, ValueError) as exc:
        ret["comment"] = f"invalid arguments: {exc}"
        return ret
    deadline = time.monotonic() + timeout
    while True:
        try:
            report, error = __salt__["k8s_etcd.cluster_health"](**conn), None
        except (CommandExecutionError, SaltInvocationError) as exc:
            report, error = None, str(exc)
        if report is not None and report["quorum"]:
            degraded = " (degraded)" if report["unhealthy"] else ""
            ret.update(result=True, comment=f"etcd has quorum{degraded}: {_describe(report)}")
            return ret
        state = _describe(report) if report is not None else error
        if __opts__["test"]:
            ret.update(result=None, comment=f"etcd has no quorum now; would wait up to {timeout:g}s. {state}")
            return ret
        if time.monotonic() + interval > deadline:
            ret["comment"] = f"etcd has no quorum after waiting {timeout:g}s: {state}"
            return ret
        time.sleep(interval)


def _snapshot_facts(facts):
    """What a comment says of a sound snapshot (``k8s_etcd.verify_snapshot``'s facts)."""
    return (
        f"revision {facts['revision']}, {facts['size']} bytes, sha256 {facts['sha256']}, {facts['secrets']} Secret "
        "revisions, all encrypted"
    )


def snapshot_present(name, keep, max_age=3600, copy_to=None, **conn):
    """
    Ensure directory ``name`` holds a snapshot of this etcd member taken less than ``max_age`` seconds ago: when the
    newest is older (or there is none), take one with ``k8s_etcd.backup`` (checked before it is kept, all but the
    newest ``keep`` removed, copied to ``copy_to`` when given). A re-run within ``max_age`` changes nothing; with
    ``test=True`` nothing is taken and the comment says whether one would be.

    .. code-block:: yaml

        etcd snapshot:
          k8s_etcd.snapshot_present:
            - name: /var/backups/kubesalt/etcd
            - keep: 7
            - max_age: 3600
    """
    ret = _ret(name)
    try:
        conn = _conn(conn)
        newest = (__salt__["k8s_etcd.snapshots"](name) or [None])[0]
        age = time.time() - newest["mtime"] if newest else None
        if newest and age < float(max_age):
            ret.update(result=True, comment=f"newest etcd snapshot {newest['path']} is {age:.0f}s old (< {max_age}s)")
            return ret
        why = "there is none" if newest is None else f"the newest is {age:.0f}s old"
        if __opts__["test"]:
            ret.update(result=None, changes={"snapshot": f"new in {name}"}, comment=f"would take a snapshot: {why}")
            return ret
        taken = __salt__["k8s_etcd.backup"](directory=name, keep=keep, copy_to=copy_to or None, **conn)
        changes = {"snapshot": taken["path"], "revision": taken["revision"]}
        if taken["removed"]:
            changes["removed"] = taken["removed"]
        if taken.get("copied_to"):
            changes["copied_to"] = taken["copied_to"]
        ret.update(
            result=True,
            changes=changes,
            comment=f"took etcd snapshot {taken['path']} ({_snapshot_facts(taken)}) because {why}",
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        failed(ret, exc)
    return ret


def first_start(name, config=None, ask=True):
    """
    Decide, just before etcd starts, how this member starts for the first time, and write it to the environment
    file ``name`` (``k8s_conf.etcd_first_start_file``, 0600) that its unit reads: nothing to do when the data
    directory already holds a member (etcd then ignores those settings, and the file is left as it is); otherwise
    ``k8s_etcd.initial_cluster`` asks the other members of ``k8s:nodes`` (``ask=False``: nobody, a files-only run)
    and says ``new`` (the first bootstrap) or ``existing`` -- and a member joining a running cluster is added there
    as a learner first (``k8s_etcd.member_add``). Decided at apply time, after ``k8s.pki`` issued the certificate it
    asks with; an unchanged decision changes nothing.

    .. code-block:: jinja

        etcd first start settings:
          k8s_etcd.first_start:
            - name: /etc/kubernetes/etcd-first-start.env
            - config: {{ k8s | json }}
    """
    ret = _ret(name)
    try:
        config = config or __salt__["k8s.config"]()
        decision = __salt__["k8s_etcd.initial_cluster"](config, ask=ask)
        if decision is None:
            ret.update(result=True, comment="the data directory holds a member: its first start is behind it")
            return ret
        contents = __salt__["k8s_etcd.first_start_env"](decision)
        try:
            with open(name, encoding="utf-8") as handle:
                current = handle.read()
        except FileNotFoundError:
            current = None
        me = config["cluster"]["minion_id"]
        changes = {}
        if current != contents:
            changes["state"] = decision["state"]
            changes["initial_cluster"] = decision["initial_cluster"]
        if decision["join"]:
            changes["added"] = {"name": me, "peer_url": config["cluster"]["etcd_peer_url"], "learner": True}
            if decision["promote_first"]:
                changes["promoted_first"] = decision["promote_first"]
        if not changes:
            ret.update(result=True, comment=f"{name} holds this member's first start ({decision['state']})")
            return ret
        if __opts__["test"]:
            ret.update(result=None, changes=changes, comment=f"would start {me} as {decision['state']}")
            return ret
        if decision["join"]:
            __salt__["k8s_etcd.member_add"](
                config["cluster"]["etcd_peer_url"],
                learner=True,
                wait=config["etcd"]["health_timeout"],
                promote_first=decision["promote_first"],
                endpoints=config["cluster"]["etcd_other_client_urls"],
            )
        files.write(name, contents, 0o600)
        ret.update(result=True, changes=changes, comment=f"{me} starts as {decision['state']}: {name}")
    except (CommandExecutionError, SaltInvocationError, OSError) as exc:
        failed(ret, exc)
    return ret


def _against_nodes(check, config, conn):
    """``(settings, check())``: ``check`` (``k8s_etcd.not_voting`` or ``k8s_etcd.members_to_remove``) asked of
    ``k8s:nodes`` and the member list as the cluster gives it now, and the connection for what follows."""
    conn = _conn(conn)
    config = config or __salt__["k8s.config"]()
    return config, conn, lambda: __salt__[check](config, __salt__["k8s_etcd.member_list"](**conn))


def members_voting(name, config=None, wait=120, **conn):
    """
    Check that every etcd member of ``k8s:nodes`` is a started, voting member of the running cluster
    (``k8s_etcd.not_voting``), waiting up to ``wait`` seconds for joins still in progress (a learner is promoted by
    ``k8s.etcd`` on its own node). Changes nothing; fails naming each member that is not there yet. The
    ``k8s.etcd.member`` orchestration checks this after the joins: it does not take a step's success on trust.

    .. code-block:: jinja

        every etcd member of k8s:nodes votes:
          k8s_etcd.members_voting:
            - name: etcd membership
            - config: {{ k8s | json }}
            - wait: {{ k8s.etcd.health_timeout }}
    """
    ret = _ret(name)
    try:
        config, _, not_voting = _against_nodes("k8s_etcd.not_voting", config, conn)
        deadline = time.monotonic() + (0 if __opts__["test"] else float(wait))
        while True:
            problems = not_voting()
            if not problems or time.monotonic() + 2 > deadline:
                break
            time.sleep(2)
        if not problems:
            ret.update(
                result=True, comment=f"every etcd member of k8s:nodes votes ({len(config['cluster']['etcd_members'])})"
            )
            return ret
        listed = "; ".join(f"{n}: {why}" for n, why in sorted(problems.items()))
        if __opts__["test"]:
            ret.update(result=None, comment=f"not every etcd member of k8s:nodes votes yet: {listed}")
        else:
            ret["comment"] = (
                f"after {float(wait):g}s, not every etcd member of k8s:nodes votes: {listed} "
                "(run salt-run state.orchestrate k8s.etcd.member again)"
            )
    except (CommandExecutionError, SaltInvocationError) as exc:
        failed(ret, exc)
    return ret


def members_match(name, config=None, **conn):
    """
    Ensure the running cluster has no member that ``k8s:nodes`` does not list as an etcd member
    (``k8s_etcd.members_to_remove``, matched by peer URL): each is removed in turn -- members that are down first --
    the quorum checked before every removal (``k8s_etcd.removal_problem``); the first that would lose quorum stops
    the state, naming it, with the removals done so far in ``changes``. Stop each removed member's etcd afterwards
    (``k8s.etcd.retire``).

    .. code-block:: jinja

        etcd members not in k8s:nodes removed:
          k8s_etcd.members_match:
            - name: etcd membership
            - config: {{ k8s | json }}
    """
    ret = _ret(name)
    try:
        _, conn, to_remove = _against_nodes("k8s_etcd.members_to_remove", config, conn)
        leaving = to_remove()
        if not leaving:
            ret.update(result=True, comment="every etcd member is one k8s:nodes lists")
            return ret
        if __opts__["test"]:
            ret.update(
                result=None,
                changes={"removed": [m["label"] for m in leaving]},
                comment=f"would remove {', '.join(m['label'] for m in leaving)}, one at a time",
            )
            return ret
        removed = []
        # members that are down first: removing them never costs quorum, and it may make the others' removal safe
        down = set(__salt__["k8s_etcd.cluster_health"](**conn)["unhealthy"])
        for member in sorted(leaving, key=lambda m: (m["label"] not in down, m["label"])):
            problem = __salt__["k8s_etcd.removal_problem"](__salt__["k8s_etcd.cluster_health"](**conn), member["label"])
            if problem:
                ret.update(changes={"removed": removed} if removed else {}, comment=f"not removed: {problem}")
                return ret
            __salt__["k8s_etcd.member_remove"](member["id"], **conn)
            removed.append(member["label"])
        ret.update(result=True, changes={"removed": removed}, comment=f"removed {', '.join(removed)}")
    except (CommandExecutionError, SaltInvocationError) as exc:
        failed(ret, exc)
    return ret


def snapshot_sound(name, directory=None):
    """
    Check that snapshot ``name`` (a path, or ``latest``: the newest in ``directory``) is a sound etcd snapshot
    (``k8s_etcd.verify_snapshot``). Changes nothing; the comment gives its revision, size and sha256.

    .. code-block:: yaml

        etcd snapshot to restore:
          k8s_etcd.snapshot_sound:
            - name: latest
            - directory: /var/backups/kubesalt/etcd
    """
    ret = _ret(name)
    try:
        path = __salt__["k8s_etcd.resolve_snapshot"](name, directory)
        facts = __salt__["k8s_etcd.verify_snapshot"](path)
        ret.update(result=True, comment=f"{path}: {_snapshot_facts(facts)}")
    except (CommandExecutionError, SaltInvocationError) as exc:
        failed(ret, exc)
    return ret


def member_promoted(name, peer_url, wait=120, **conn):
    """
    Ensure member ``name`` (``peer_url``) votes: a learner is promoted once it has caught up (tried for up to
    ``wait`` seconds). A voting member changes nothing.

    .. code-block:: yaml

        etcd member votes:
          k8s_etcd.member_promoted:
            - name: master03
            - peer_url: https://10.240.0.13:2380
    """
    ret = _ret(name)
    try:
        conn = _conn(conn)
        member = __salt__["k8s_etcd.find_member"](__salt__["k8s_etcd.member_list"](**conn), peer_url)
        if member is None:
            ret["comment"] = f"etcd member {name} ({peer_url}) is not in the cluster"
            return ret
        if not member["is_learner"]:
            ret.update(result=True, comment=f"etcd member {name} is a voting member")
            return ret
        changes = {"promoted": name}
        if __opts__["test"]:
            ret.update(result=None, changes=changes, comment=f"etcd learner {name} would be promoted")
            return ret
        __salt__["k8s_etcd.member_promote"](peer_url, wait=wait, **conn)
        ret.update(result=True, changes=changes, comment=f"etcd learner {name} promoted to a voting member")
    except (CommandExecutionError, SaltInvocationError) as exc:
        failed(ret, exc)
    return ret


def member_absent(name, only_unhealthy=False, remove=True, **conn):
    """
    Ensure ``name`` (a member's name, hex id or peer URL) is not a member of the cluster. Refused, changing
    nothing, when removing it would lose quorum (``k8s_etcd.removal_problem``), and with ``only_unhealthy`` (a
    replacement) when the member is healthy. With ``remove=False`` only check: a member still there fails the state
    (``k8s.etcd.retire`` checks so before it stops a member). Stop the member's etcd afterwards (``k8s.etcd.retire``
    does, and moves its data directory aside).

    .. code-block:: yaml

        old etcd member removed:
          k8s_etcd.member_absent:
            - name: master04
    """
    ret = _ret(name)
    try:
        conn = _conn(conn)
        member = __salt__["k8s_etcd.find_member"](__salt__["k8s_etcd.member_list"](**conn), name)
        if member is None:
            ret.update(result=True, comment=f"{name} is not an etcd member")
            return ret
        if not remove:
            ret["comment"] = (
                f"{name} is still an etcd member ({member['id']}): remove it from the cluster first "
                "(salt-run state.orchestrate k8s.etcd.member, or k8s.node.remove)"
            )
            return ret
        health = __salt__["k8s_etcd.cluster_health"](**conn)
        label = member["name"] or member["id"]
        problem = __salt__["k8s_etcd.removal_problem"](health, label)
        if only_unhealthy and (health["members"].get(label) or {}).get("healthy"):
            problem = f"{label} is healthy; only a member that is down is replaced (remove a live one instead)"
        if problem:
            ret["comment"] = f"etcd member {name} not removed: {problem}"
            return ret
        changes = {"removed": {"name": member["name"], "id": member["id"], "peer_urls": member["peer_urls"]}}
        if __opts__["test"]:
            ret.update(result=None, changes=changes, comment=f"etcd member {name} would be removed")
            return ret
        __salt__["k8s_etcd.member_remove"](member["id"], **conn)
        ret.update(result=True, changes=changes, comment=f"etcd member {name} ({member['id']}) removed")
    except (CommandExecutionError, SaltInvocationError) as exc:
        failed(ret, exc)
    return ret


def _marker(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def data_restored(name, snapshot, member, peer_url, token, marker, tool_dirs=(), directory=None):
    """
    Ensure data directory ``name`` holds the restore of ``snapshot`` (a path, or ``latest``: the newest in
    ``directory``) as a one-member cluster (member ``member`` at ``peer_url``, cluster token ``token``) -- the seed of
    a restore; the other members join it afterwards. Done once per restore: ``marker`` records it (by the
    ``snapshot`` argument as given), so re-running an interrupted restore does not restore again over a seed that
    already runs. The previous data directory is moved aside.

    .. code-block:: yaml

        etcd data restored:
          k8s_etcd.data_restored:
            - name: /var/lib/etcd
            - snapshot: /var/backups/kubesalt/etcd/etcd-snapshot-20261201T120000.000000Z.db
            - member: master01
            - peer_url: https://10.240.0.11:2380
            - token: kubesalt
            - marker: /var/lib/etcd.restore-pending
    """
    ret = _ret(name)
    done = {"restore": snapshot, "role": "seed"}
    try:
        if _marker(marker) == done and __salt__["k8s_etcd.holds_member"](name):
            ret.update(result=True, comment=f"{name} already holds the restore of {snapshot}")
            return ret
        snapshot = __salt__["k8s_etcd.resolve_snapshot"](snapshot, directory)
        facts = __salt__["k8s_etcd.verify_snapshot"](snapshot)
        changes = {"restored": snapshot, "revision": facts["revision"]}
        if os.path.lexists(name):
            changes["moved_aside"] = name
        if __opts__["test"]:
            ret.update(result=None, changes=changes, comment=f"{name} would be restored from {snapshot}")
            return ret
        tool = __salt__["k8s_etcd.restore_tool"](list(tool_dirs))
        result = __salt__["k8s_etcd.restore"](snapshot, name, member, peer_url, token, tool=tool)
        files.write(marker, json.dumps(done), 0o600)
        changes["moved_aside"] = result["moved_aside"]
        ret.update(
            result=True,
            changes=changes,
            comment=f"{name} restored from {snapshot} (revision {facts['revision']}) with {tool}; the previous data "
            f"directory is {result['moved_aside'] or 'absent'}",
        )
    except (CommandExecutionError, SaltInvocationError, OSError) as exc:
        failed(ret, exc)
    return ret


def data_cleared(name, marker, restore_id):
    """
    Ensure data directory ``name`` of a member that is not the seed of restore ``restore_id`` is out of the way: it
    is moved aside (never deleted) once per restore, and ``marker`` records that, so the member joins the restored
    cluster as a new member and a re-run does not move its new data aside again.

    .. code-block:: yaml

        etcd data cleared for the restore:
          k8s_etcd.data_cleared:
            - name: /var/lib/etcd
            - marker: /var/lib/etcd.restore-pending
            - restore_id: /var/backups/kubesalt/etcd/etcd-snapshot-20261201T120000.000000Z.db
    """
    ret = _ret(name)
    done = {"restore": restore_id, "role": "member"}
    try:
        if _marker(marker) == done:
            ret.update(result=True, comment=f"{name} was already cleared for restore {restore_id}")
            return ret
        changes = {"moved_aside": name} if os.path.lexists(name) else {}
        changes["marker"] = marker
        if __opts__["test"]:
            ret.update(result=None, changes=changes, comment=f"{name} would be moved aside for restore {restore_id}")
            return ret
        moved = __salt__["k8s_etcd.move_aside"](name, "before-restore")
        files.write(marker, json.dumps(done), 0o600)
        if moved:
            changes["moved_aside"] = moved
        ret.update(
            result=True, changes=changes, comment=f"{name} cleared for restore {restore_id}: {moved or 'absent'}"
        )
    except (CommandExecutionError, SaltInvocationError, OSError) as exc:
        failed(ret, exc)
    return ret
