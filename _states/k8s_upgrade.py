"""
kubesalt rolling-upgrade states: thin wrappers over the ``k8s_upgrade`` execution module, applied on the CA minion
by the ``k8s.upgrade`` orchestration (``formulas/k8s/upgrade.sls``).

- ``preflight_passed``: the version-skew and health checks; changes nothing itself, reports the plan as its
  changes (none when there is nothing to upgrade).
- ``node_started``: a node marked, cordoned and drained (PodDisruptionBudgets honoured).
- ``node_finished``: a node Ready at the target version, uncordoned, its upgrade recorded.

With ``test=True`` nothing is written and ``changes`` holds what would change; a second run returns ``changes: {}``.
"""

import functools

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import outcome

__virtualname__ = "k8s_upgrade"


def __virtual__():
    return outcome.virtual(__salt__, __virtualname__, "k8s_upgrade.preflight")


def preflight_passed(name, config=None):
    """
    Refuse the upgrade (``result: False``, every problem named) when the version-skew policy forbids it or the
    cluster is not healthy (``k8s_upgrade.preflight``); otherwise pass, reporting the plan as ``changes: {plan:
    [lines]}`` (``result: None`` with ``test=True``) -- or no changes when there is nothing to upgrade. Writes
    nothing itself.

    .. code-block:: jinja

        upgrade preflight:
          k8s_upgrade.preflight_passed:
            - config: {{ k8s | json }}
    """
    ret = outcome.new(name)
    try:
        plan = __salt__["k8s_upgrade.preflight"](outcome.settings(__salt__, config))
        text = __salt__["k8s_upgrade.describe"](plan)
        if not plan["snapshot"]:
            ret["comment"] = "nothing to upgrade:\n" + text
            return ret
        # The plan is reported as this step's changes (what the orchestration is about to do), so the salt-run
        # output shows it, and a run with nothing to do reports none.
        ret.update(changes={"plan": text.splitlines()}, comment="upgrade plan:\n" + text)
        if __opts__.get("test"):
            ret["result"] = None
    except (CommandExecutionError, SaltInvocationError) as exc:
        outcome.failed(ret, exc)
    return ret


def _node_step(name, function, config, timeout, keys, comments, report):
    """Compare (``function`` with ``test=True``), then act, then report: the ``keys`` of its answer that are set are
    the changes; ``comments`` = (nothing to do, would do), ``report(answer)`` the comment once done."""

    def changes(answer):
        return {k: answer[k] for k in keys if answer.get(k)}

    def probe(answer):
        pending = changes(answer)
        return pending, comments[1] if pending else comments[0]

    return outcome.converge(
        name,
        __opts__.get("test"),
        lambda: outcome.settings(__salt__, config),
        functools.partial(__salt__[function], name=name, timeout=timeout),
        probe,
        lambda done, pending: (changes(done), report(done)),
    )


def snapshot_taken(name, keep, copy_to=None, endpoints=None, config=None):
    """
    Take a fresh etcd snapshot into directory ``name`` (``k8s_etcd.snapshot_present`` with ``max_age: 0``: verified,
    the newest ``keep`` kept) when the upgrade plan (``k8s_upgrade.preflight``) has anything to upgrade; otherwise
    change nothing.

    .. code-block:: jinja

        etcd snapshot before the upgrade:
          k8s_upgrade.snapshot_taken:
            - name: /var/backups/kubesalt/etcd
            - keep: 7
            - config: {{ k8s | json }}
    """
    ret = outcome.new(name)
    try:
        if not __salt__["k8s_upgrade.preflight"](outcome.settings(__salt__, config))["snapshot"]:
            ret["comment"] = "nothing to upgrade: no snapshot needed"
            return ret
    except (CommandExecutionError, SaltInvocationError) as exc:
        return outcome.failed(ret, exc)
    return __states__["k8s_etcd.snapshot_present"](name, keep, max_age=0, copy_to=copy_to, endpoints=endpoints)


def node_started(name, config=None, timeout=None):
    """
    Ensure Node ``name`` is marked as being upgraded (annotation ``kubesalt.io/upgrade-cordoned``), cordoned and
    drained (``k8s_upgrade.begin_node``: the Eviction API, PodDisruptionBudgets honoured, up to ``timeout`` seconds,
    default ``k8s:timeouts:drain``).

    .. code-block:: jinja

        worker01 cordoned and drained for the upgrade:
          k8s_upgrade.node_started:
            - name: worker01
            - config: {{ k8s | json }}
    """

    def report(done):
        skipped = f"; left: {', '.join(done['skipped'])}" if done["skipped"] else ""
        return f"Node {name} cordoned and drained ({len(done['evicted'])} evicted){skipped}"

    return _node_step(
        name,
        "k8s_upgrade.begin_node",
        config,
        timeout,
        keys=("marked", "cordoned", "evicted"),
        comments=(
            f"Node {name} is upgraded already, or marked, cordoned and drained",
            f"Node {name} would be cordoned and drained",
        ),
        report=report,
    )


def node_finished(name, config=None, timeout=None):
    """
    Ensure Node ``name`` is Ready with the target kubelet, uncordoned when the upgrade cordoned it, and recorded as
    upgraded (``k8s_upgrade.finish_node``; waits up to ``timeout`` seconds, default ``k8s:timeouts:node_ready``).

    .. code-block:: jinja

        worker01 Ready and uncordoned:
          k8s_upgrade.node_finished:
            - name: worker01
            - config: {{ k8s | json }}
    """

    def report(done):
        return f"Node {name} is Ready at the target versions" + (" and uncordoned" if done["uncordoned"] else "")

    return _node_step(
        name,
        "k8s_upgrade.finish_node",
        config,
        timeout,
        keys=("uncordoned", "upgraded_to"),
        comments=(f"Node {name} is upgraded and schedulable", f"Node {name} would be uncordoned once Ready"),
        report=report,
    )
