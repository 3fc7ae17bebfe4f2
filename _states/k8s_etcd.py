"""
kubesalt etcd states: keys written with compare-and-swap, and a bounded wait for a healthy etcd quorum.

Every state takes the connection parameters of the ``k8s_etcd`` execution module (``endpoints``, ``ca``, ``cert``,
``key``, ``timeout``) as keyword arguments; left out, they come from ``k8s.config`` on the minion.
"""

import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

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
