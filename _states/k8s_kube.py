"""
kubesalt Kubernetes API states: thin wrappers over the ``k8s_kube`` execution module (compare, then act, then
report).

- ``api_ready``, ``node_ready``, ``nodes_ready``, ``deployment_available``: bounded waits; they never change
  anything (with ``test=True`` they ask once and report ``result: None`` when the answer is "not yet").
- ``object_present`` / ``objects_present``: objects applied server-side when they differ from the manifest.
- ``node_registered``: a node's role labels and master taint, set by the CA minion (which holds the admin
  certificate); other minions ask it over peer publish (``k8s_kube.register_node_remote``).

Every state takes ``config``, the settings from ``k8s/map.jinja`` (loaded with ``k8s.config`` when omitted). With
``test=True`` nothing is written and ``changes`` holds what would change; a second run with the same arguments
returns ``changes: {}``.

Each state's docstring has an SLS example; ``k8s`` is the settings from ``k8s/map.jinja``.
"""

import functools

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import outcome, peer

__virtualname__ = "k8s_kube"


def __virtual__():
    return outcome.virtual(__salt__, __virtualname__, "k8s_kube.apply", "is 'requests' installed?")


def _config(config):
    return outcome.settings(__salt__, config)


def _keys(manifests):
    """``Kind/namespace/name`` of every manifest of a list; a malformed list is refused as a whole."""
    if not isinstance(manifests, list):
        raise SaltInvocationError(f"manifests: expected a list of manifests, got {type(manifests).__name__}")
    return [__salt__["k8s_kube.object_key"](m) for m in manifests]


def _test():
    return bool(__opts__.get("test"))


# --------------------------------------------------------------------------------------------------------------------
# Waits
# --------------------------------------------------------------------------------------------------------------------
def _wait(name, config, timeout, until):
    """
    A wait state: ``until(config, timeout)`` waits (up to ``timeout``, None: the ``k8s:timeouts`` default) and returns
    the comment, or raises when it gives up. Under test=True it asks once (timeout 0) and reports ``result: None``
    while the answer is "not yet". A wait never changes anything.
    """
    ret = outcome.new(name)
    try:
        config = _config(config)
        try:
            ret["comment"] = until(config, 0 if _test() else timeout)
        except CommandExecutionError as exc:
            if not _test():
                raise
            ret.update(result=None, comment=f"{exc}; a real run would wait.")
        return ret
    except (CommandExecutionError, SaltInvocationError) as exc:
        return outcome.failed(ret, exc)


def api_ready(name, config=None, timeout=None, identity="apiserver-kubelet-client", server=None):
    """
    Wait until the API server answers ``/readyz`` with ok (up to ``timeout`` seconds, default
    ``k8s:timeouts:apiserver_ready``). Changes nothing.

    name
        A label for the state.
    identity
        The client certificate to present: ``apiserver-kubelet-client`` on a master, ``kubelet`` elsewhere.
    server
        The API server URL; default: the local one on a master, ``k8s:apiserver:endpoint`` elsewhere.

    .. code-block:: jinja

        kube-apiserver answers readyz:
          k8s_kube.api_ready:
            - config: {{ k8s | json }}
            - timeout: 180
    """

    def until(config, wait):
        answer = __salt__["k8s_kube.wait_ready"](config, timeout=wait, identity=identity, server=server)
        return f"kube-apiserver at {answer['url']} is ready (waited {answer['waited']:g} s)."

    return _wait(name, config, timeout, until)


def node_ready(name, config=None, timeout=None, identity="kubelet", server=None, node=None):
    """
    Wait until a Node is registered and Ready (up to ``timeout`` seconds, default ``k8s:timeouts:node_ready``).
    With ``identity=kubelet`` a node checks its own Node object with its own certificate. Changes nothing.

    name
        A label for the state.
    node
        The Node to wait for; default: this minion's (node name = minion id).

    .. code-block:: jinja

        node is Ready:
          k8s_kube.node_ready:
            - config: {{ k8s | json }}
    """
    node = str(node or __opts__["id"])

    def until(config, wait):
        __salt__["k8s_kube.wait_node_ready"](config, node, timeout=wait, identity=identity, server=server)
        return f"Node {node} is Ready."

    return _wait(name, config, timeout, until)


def nodes_ready(name, nodes, config=None, timeout=None, identity="admin", server=None):
    """
    Wait until every node in ``nodes`` is registered and Ready (up to ``timeout`` seconds in all, default
    ``k8s:timeouts:node_ready``); on timeout the comment lists each node that is not Ready and why. Changes nothing.
    (The argument is not called ``names``: Salt would expand that into one state per name.)

    .. code-block:: jinja

        every node is Ready:
          k8s_kube.nodes_ready:
            - nodes: {{ k8s.cluster.nodes | json }}
            - config: {{ k8s | json }}
    """
    names = [n for n in nodes.split(",") if n] if isinstance(nodes, str) else nodes

    def until(config, wait):
        __salt__["k8s_kube.nodes_ready"](config, names, timeout=wait, identity=identity, server=server)
        return f"Nodes {', '.join(map(str, names))} are Ready."

    return _wait(name, config, timeout, until)


def deployment_available(name, namespace, config=None, timeout=None, identity="admin", server=None):
    """
    Wait until Deployment ``namespace/name`` has rolled out and is available (up to ``timeout`` seconds, default
    ``k8s:timeouts:addons_ready``). Changes nothing.

    .. code-block:: jinja

        CoreDNS is available:
          k8s_kube.deployment_available:
            - name: coredns
            - namespace: kube-system
            - config: {{ k8s | json }}
    """

    def until(config, wait):
        rollout = __salt__["k8s_kube.deployment_available"](
            config, namespace, name, timeout=wait, identity=identity, server=server
        )
        return rollout["message"]

    return _wait(name, config, timeout, until)


# --------------------------------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------------------------------
def _change(result):
    change = {"action": result["action"]}
    if result["action"] == "updated":
        change["diff"] = result["diff"]
    return change


def object_present(name, manifest, config=None, identity="admin", server=None):
    """
    Ensure an object looks like ``manifest``: nothing is sent when the manifest is a subset of the live object;
    otherwise a server-side apply creates or updates it (see ``k8s_kube.apply``). ``changes`` is
    ``{"action": "created"}`` or ``{"action": "updated", "diff": {path: {old, new}}}``.

    name
        A label for the state.
    manifest
        The object (kind, metadata.name, metadata.namespace for namespaced kinds, and the fields kubesalt manages).
    identity
        The client certificate; ``admin`` is held by masters only.

    .. code-block:: jinja

        demo namespace:
          k8s_kube.object_present:
            - manifest: {apiVersion: v1, kind: Namespace, metadata: {name: demo}}
            - config: {{ k8s | json }}
    """
    ret = outcome.new(name)
    try:
        config = _config(config)
        result = __salt__["k8s_kube.apply"](config, manifest, identity=identity, test=_test(), server=server)
        if result["changed"]:
            ret["changes"] = _change(result)
            if _test():
                ret.update(result=None, comment=f"{result['object']} would be {result['action']}.")
            else:
                ret["comment"] = f"{result['object']} {result['action']}."
        else:
            ret["comment"] = " ".join([f"{result['object']} is as wanted."] + [result.get("note", "")]).strip()
        return ret
    except (CommandExecutionError, SaltInvocationError) as exc:
        return outcome.failed(ret, exc)


def objects_present(name, manifests, config=None, identity="admin", server=None):
    """
    Ensure every object in ``manifests`` looks as it says, in list order (a Namespace before what lives in it), as
    :py:func:`object_present` does for one. ``changes`` is keyed by ``Kind/namespace/name``. The first failure
    stops the list; the comment names it and the changes already made are reported.

    .. code-block:: jinja

        cluster objects:
          k8s_kube.objects_present:
            - manifests: {{ salt["k8s_conf.cluster_objects"](k8s) | json }}
            - config: {{ k8s | json }}
    """
    ret = outcome.new(name)
    try:
        config = _config(config)
        keys = _keys(manifests)  # refuse a bad list before applying any
        changes, unchanged, notes = {}, 0, []
        for key, manifest in zip(keys, manifests, strict=True):
            try:
                result = __salt__["k8s_kube.apply"](config, manifest, identity=identity, test=_test(), server=server)
            except (CommandExecutionError, SaltInvocationError) as exc:
                done = f" Changed before it: {', '.join(changes)}." if changes else ""
                ret.update(result=False, changes=changes, comment=f"{key}: {exc}.{done}")
                return ret
            if result["changed"]:
                changes[key] = _change(result)
            else:
                unchanged += 1
                if result.get("note"):
                    notes.append(f"{key}: {result['note']}.")
        ret["changes"] = changes
        if changes and _test():
            ret["result"] = None
            ret["comment"] = f"{len(changes)} of {len(keys)} objects would be created or updated."
        else:
            ret["comment"] = f"{len(changes)} of {len(keys)} objects created or updated, {unchanged} as wanted."
        ret["comment"] = " ".join([ret["comment"]] + notes)
        return ret
    except (CommandExecutionError, SaltInvocationError) as exc:
        return outcome.failed(ret, exc)


def objects_absent(name, manifests, config=None, identity="admin", server=None):
    """
    Ensure none of the objects ``manifests`` name exists (deleted in reverse list order: what lives in a Namespace
    before the Namespace). ``changes`` is keyed by ``Kind/namespace/name``.

    .. code-block:: jinja

        demo namespace removed:
          k8s_kube.objects_absent:
            - manifests: [{apiVersion: v1, kind: Namespace, metadata: {name: demo}}]
            - config: {{ k8s | json }}
    """
    ret = outcome.new(name)
    try:
        config = _config(config)
        keys = _keys(manifests)
        changes = {}
        for key, manifest in reversed(list(zip(keys, manifests, strict=True))):
            result = __salt__["k8s_kube.delete"](config, manifest, identity=identity, test=_test(), server=server)
            if result["changed"]:
                changes[key] = "would be deleted" if _test() else "deleted"
        ret["changes"] = changes
        if changes and _test():
            ret.update(result=None, comment=f"{len(changes)} of {len(keys)} objects would be deleted.")
        else:
            ret["comment"] = f"{len(changes)} of {len(keys)} objects deleted, the others do not exist."
        return ret
    except (CommandExecutionError, SaltInvocationError) as exc:
        return outcome.failed(ret, exc)


# --------------------------------------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------------------------------------
def _peer_register(ca_minion, timeout, test):
    """Ask the CA minion to register this minion's node through peer publish; return its reply dict."""
    result = peer.call(
        __salt__["publish.publish"],
        __opts__["id"],
        ca_minion,
        "k8s_kube.register_node_remote",
        [timeout, test],
        timeout + 30,
    )
    if "changed" not in result:
        raise CommandExecutionError(
            f"unexpected reply from CA minion {ca_minion!r} to k8s_kube.register_node_remote: {result!r:.200}"
        )
    return result


def _registered_already(config, me):
    """True when Node ``me`` exists and already has every label and taint ``node_metadata`` wants."""
    try:
        node = __salt__["k8s_kube.get"](config, "Node", me, identity="kubelet")
    except (CommandExecutionError, SaltInvocationError):
        return False
    if not node:
        return False
    want = __salt__["k8s_kube.node_metadata"](config, me)
    labels = (node.get("metadata") or {}).get("labels") or {}
    taints = {(t.get("key"), t.get("effect")) for t in (node.get("spec") or {}).get("taints") or []}
    return all(labels.get(k) == v for k, v in want["labels"].items()) and all(
        (t["key"], t["effect"]) in taints for t in want["taints"]
    )


def node_registered(name, config=None, timeout=None):
    """
    Ensure this minion's Node (node name = minion id) carries its role labels and master taint
    (``k8s_kube.node_metadata``: from the ``k8s:nodes`` inventory). The CA minion does the patch with the admin
    certificate, after waiting up to ``timeout`` seconds (default ``k8s:timeouts:node_ready``) for the kubelet to
    register the node: on the CA minion itself through ``k8s_kube.register_node_local``; on any other minion through
    peer publish (``k8s_kube.register_node_remote``), which always registers the *calling* minion. The master needs
    ``peer: {'.*': ['k8s_kube.register_node_remote']}``.

    name
        A label for the state; the node is always this minion's.

    .. code-block:: jinja

        node labels and taints:
          k8s_kube.node_registered:
            - config: {{ k8s | json }}
    """
    ret = outcome.new(name)
    me = __opts__["id"]
    try:
        config = _config(config)
        ca_minion = config["cluster"]["ca_minion"]  # validated settings always have one (the first master)
        if timeout is None:
            timeout = config["timeouts"]["node_ready"]
        if me != ca_minion and _registered_already(config, me):
            # Checked with this node's own kubelet credentials: a converged node sends no peer publish at all
            # (each one occupies a salt-master worker thread while it waits for the CA minion).
            ret["comment"] = f"Node {me} has its role labels and taints."
            return ret
        if me == ca_minion:
            result = __salt__["k8s_kube.register_node_local"](me, config=config, timeout=timeout, test=_test())
        else:
            result = _peer_register(ca_minion, timeout, _test())
        if result["changed"]:
            ret["changes"] = {k: result[k] for k in ("labels", "taints") if result[k]}
            if _test():
                ret["result"] = None
        ret["comment"] = result.get("comment") or ""
        return ret
    except (CommandExecutionError, SaltInvocationError) as exc:
        return outcome.failed(ret, exc)


# --------------------------------------------------------------------------------------------------------------------
# Node removal
# --------------------------------------------------------------------------------------------------------------------
def node_drained(name, config=None, timeout=None, identity="admin", server=None):
    """
    Ensure Node ``name`` is cordoned and its pods evicted (``k8s_kube.drain``: PodDisruptionBudgets honoured, up to
    ``timeout`` seconds, default ``k8s:timeouts:drain``; on timeout the comment names every pod still there and
    why). A node that is not registered, or is cordoned with nothing left to evict, changes nothing.

    .. code-block:: jinja

        worker02 drained:
          k8s_kube.node_drained:
            - name: worker02
            - config: {{ k8s | json }}
            - timeout: 600
    """

    def probe(plan):
        pending = {k: plan[k] for k in ("cordoned", "evicted") if plan[k]}
        if pending:
            return pending, f"Node {name} would be cordoned and drained"
        if not plan["exists"]:
            return {}, f"Node {name} is not registered; nothing to drain"
        return {}, f"Node {name} is cordoned and has no pod to evict"

    def report(done, pending):
        skipped = f"; left: {', '.join(done['skipped'])}" if done["skipped"] else ""
        comment = f"Node {name} cordoned and drained in {done['waited']} s ({len(done['evicted'])} evicted){skipped}"
        return {k: done[k] for k in ("cordoned", "evicted") if done[k]}, comment

    drain = functools.partial(__salt__["k8s_kube.drain"], name=name, timeout=timeout, identity=identity, server=server)
    return outcome.converge(name, _test(), lambda: _config(config), drain, probe, report)


def node_absent(name, config=None, identity="admin", server=None):
    """
    Ensure Node object ``name`` does not exist (stop its kubelet first, or it registers the node again).

    .. code-block:: jinja

        worker02 deleted:
          k8s_kube.node_absent:
            - name: worker02
            - config: {{ k8s | json }}
    """

    def probe(found):
        if not found["changed"]:
            return {}, f"Node {name} does not exist"
        return {"deleted": found["object"]}, f"Node {name} would be deleted"

    def report(done, pending):
        return pending, f"Node {name} deleted"

    delete = functools.partial(__salt__["k8s_kube.delete_node"], name=name, identity=identity, server=server)
    return outcome.converge(name, _test(), lambda: _config(config), delete, probe, report)
