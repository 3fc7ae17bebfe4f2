"""
kubesalt Kubernetes API client: readiness, server-side apply with a compare first, and node registration (role labels,
the master taint). The objects kubesalt puts into a cluster are built as data by ``k8s_conf`` (``cluster_objects``,
``coredns_objects`` from ``formulas/k8s/addons/coredns.yaml``); this module only talks to the API server.

How it talks to the API server
------------------------------
HTTPS with ``requests`` and a client certificate from kubesalt's PKI; no kubectl, no Kubernetes client library.
The client and the bounded waits are ``kubesalt.kubeapi``; kinds, manifests and the compare, plain data, are
``kubesalt.kubeobjects``; this module is the Salt edge over both.
Every function takes the resolved settings (``config``, what ``k8s/map.jinja`` yields: the output of
``k8s.settings``) and an ``identity``: the certificate and key are ``k8s_pki.layout(config)['certificates'][identity]``
and the server is verified with the Kubernetes CA bundle, ``<pki_dir>/kubernetes-ca.crt``. Which minion holds which
identity is the PKI's policy (``k8s_pki.entitlements``): ``admin`` (``system:masters``) only the masters, with the CA
minion the one the orchestration uses; ``kubelet`` (``system:node:<id>``) every node; ``apiserver-kubelet-client``
the masters.

The server is ``server`` when given; otherwise ``https://127.0.0.1:<k8s:apiserver:port>`` on a master (its own API
server) and ``config['cluster']['apiserver_url']`` elsewhere (``k8s:apiserver:endpoint`` or the first master).

Applying objects
----------------
:py:func:`apply` first reads the live object. When the desired manifest is a recursive subset of it (every key of a
mapping present and equal or itself a subset; lists of the same length, item by item) nothing is sent. Otherwise it
sends a server-side apply (``PATCH``, ``application/apply-patch+yaml`` with a JSON body, ``fieldManager=kubesalt``,
``force=true``), which creates the object or updates the fields kubesalt manages and leaves every other field alone.
Empty values (``None``, ``{}``, ``[]``) match an absent field, because the API server drops them. Write values the
way the API server stores them (``cpu: 100m``, not ``0.1``): a value the server rewrites differs on every run, and
costs an apply that changes nothing (reported as no change: the object comes back as it was).

Known kinds are in :py:data:`KINDS`; another kind is refused with the list.

Errors are ``CommandExecutionError`` naming the request (method, URL), the object and the API server's answer
(HTTP status and its ``Status`` message), or ``SaltInvocationError`` for a bad argument.
"""

import logging
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import kubeapi, kubeobjects, peer

log = logging.getLogger(__name__)

__virtualname__ = "k8s_kube"

FIELD_MANAGER = "kubesalt"
POLL_INTERVAL = kubeapi.POLL_INTERVAL
KINDS = kubeobjects.KINDS  # kind -> (apiVersion, plural, namespaced): the kinds kubesalt applies


def __virtual__():
    return __virtualname__


# --------------------------------------------------------------------------------------------------------------------
# Kinds and the compare (plain data: kubesalt.kubeobjects)
# --------------------------------------------------------------------------------------------------------------------
def kind_info(kind):
    """
    ``{"kind", "api_version", "plural", "namespaced"}`` of a kind kubesalt knows (see ``KINDS``); any other kind is
    refused, naming the known ones.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.kind_info Deployment
    """
    return kubeobjects.kind_info(kind)


def normalize(manifest):
    """
    Check a manifest and return the copy kubesalt sends: ``apiVersion`` filled in from ``KINDS`` when absent (when
    present, its API group must be the kind's), ``metadata.namespace`` set to ``default`` for a namespaced kind
    that has none, and a Secret's ``stringData`` folded into ``data`` (base64), as the API server stores it.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.normalize '{kind: ConfigMap, metadata: {name: a}, data: {x: "1"}}'
    """
    return kubeobjects.normalize(manifest)


def object_key(manifest):
    """
    ``Kind/namespace/name`` (``Kind/name`` when cluster-scoped) of a manifest: the key under which
    ``k8s_kube.objects_present`` reports it.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.object_key '{kind: Service, metadata: {name: kube-dns, namespace: kube-system}}'
    """
    return kubeobjects.object_key(manifest)


def differences(desired, live):
    """
    What ``desired`` has that ``live`` lacks, as ``{path: {"old": live value, "new": desired value}}``; empty when
    ``desired`` is a recursive subset of ``live``. Mappings: every desired key must be present with an equal value
    (or a subset); lists: the same length, each item a subset of the live item at the same index; scalars: equal,
    of the same type (``"53"`` is not ``53``, ``true`` is not ``1``). ``None``, ``{}`` and ``[]`` match an absent
    key. Paths look like ``spec.template.spec.containers[0].image`` or ``metadata.labels["k8s-app"]``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.differences '{spec: {replicas: 2}}' '{spec: {replicas: 1, paused: false}}'
    """
    return kubeobjects.differences(desired, live)


# --------------------------------------------------------------------------------------------------------------------
# Connection from the settings (the client: kubesalt.kubeapi)
# --------------------------------------------------------------------------------------------------------------------
def api_server(config, server=None):
    """
    The API server URL this minion uses: ``server`` when given, else the one the settings give this minion
    (``config['cluster']['api_url']``: a master its own API server, any other node ``k8s:apiserver:endpoint`` or the
    first master).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.api_server "$(salt-call --out=json k8s.config | jq .local)"
    """
    return kubeapi.server_url(config, server)


def _client(config, identity, server=None, timeout=kubeapi.REQUEST_TIMEOUT):
    return kubeapi.connect(config, identity, server, timeout, minion_id=__opts__.get("id"))


# --------------------------------------------------------------------------------------------------------------------
# Readiness
# --------------------------------------------------------------------------------------------------------------------
def readyz(config, identity="apiserver-kubelet-client", server=None, timeout=5):
    """
    Ask the API server's ``/readyz`` once: ``{"ready": bool, "url", "status": HTTP status or None, "failed": [the
    checks that failed], "error": why it is not ready}``. An unreachable server is "not ready" (with the reason);
    a client certificate the server refuses raises.

    identity
        The certificate to present (every authenticated user may read /readyz): ``apiserver-kubelet-client`` on a
        master, ``kubelet`` on any node.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.readyz "$(salt-call --out=json k8s.config | jq .local)" identity=kubelet
    """
    with _client(config, identity, server) as client:
        return client.readyz(float(timeout))


def server_version(config, identity="apiserver-kubelet-client", server=None):
    """
    The API server's version from its ``/version`` (``gitVersion``, e.g. ``v1.37.1``); every authenticated user may
    read it.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.server_version "$(salt-call --out=json k8s.config | jq .local)"
    """
    with _client(config, identity, server) as client:
        return str(client.version().get("gitVersion") or "")


def wait_ready(config, timeout=None, identity="apiserver-kubelet-client", server=None, interval=POLL_INTERVAL):
    """
    Poll ``/readyz`` until the API server is ready; return the last answer (see :py:func:`readyz`) with
    ``waited`` (seconds). Raises after ``timeout`` seconds in all (default ``k8s:timeouts:apiserver_ready``),
    naming the URL and the last error.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.wait_ready "$(salt-call --out=json k8s.config | jq .local)" timeout=120
    """
    timeout = kubeapi.wait_limit(config, "apiserver_ready", timeout)
    start = time.monotonic()
    with _client(config, identity, server) as client:

        def check(request_timeout):
            answer = client.readyz(request_timeout)
            return answer["ready"], answer, answer["error"]

        answer = kubeapi.poll(check, timeout, f"kube-apiserver at {client.server}/readyz", interval)
    answer["waited"] = round(time.monotonic() - start, 1)
    return answer


# --------------------------------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------------------------------
def get(config, kind, name=None, namespace=None, identity="admin", server=None):
    """
    Read one object, or None when it does not exist. ``kind`` is a kind from ``KINDS`` or a whole manifest (its
    kind, name and namespace are used). Without ``name``, list the kind's objects (in ``namespace``, or in every
    namespace) and return the items.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.get "$(salt-call --out=json k8s.config | jq .local)" Service kube-dns kube-system
    """
    if isinstance(kind, dict):
        manifest = normalize(kind)
        kind, namespace, name = kubeobjects.ref(manifest)
        api_version = manifest["apiVersion"]
    else:
        api_version = None
    info = kind_info(kind)
    if info["namespaced"] and name and not namespace:
        namespace = "default"
    with _client(config, identity, server) as client:
        if name:
            return client.get(
                kubeobjects.path(info, name, namespace, api_version), what=kubeobjects.label(kind, name, namespace)
            )
        answer = client.request("GET", kubeobjects.path(info, None, namespace, api_version), what=f"{kind} list")
        return answer.get("items") or []


def delete(config, manifest, identity="admin", test=False, server=None):
    """
    Delete the object ``manifest`` names (kind, metadata.name, metadata.namespace), if it exists. Returns
    ``{"changed": bool, "object": "Kind namespace/name"}``; with ``test=True`` only read.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.delete "$(salt-call --out=json k8s.config | jq .local)" \\
            '{kind: Deployment, metadata: {name: coredns, namespace: kube-system}}'
    """
    _, label, path = kubeobjects.target(manifest)
    with _client(config, identity, server) as client:
        if client.request("GET", path, what=label, missing_ok=(404,)) is None:
            return {"changed": False, "object": label}
        if not test:
            client.request("DELETE", path, body={"propagationPolicy": "Background"}, what=label, missing_ok=(404,))
    return {"changed": True, "object": label}


def rewrite(config, kind, namespace=None, names=None, identity="admin", server=None):
    """
    Write objects of ``kind`` back unchanged (GET, then PUT with its resourceVersion), so the API server stores them
    again with its current storage settings -- after a change of the encryption key, each Secret encrypted with the
    new one (``kubectl get secrets -A -o json | kubectl replace -f -``). Only ``names`` (``namespace/name``, or
    ``name`` for a cluster-scoped kind) when given, else every object (in ``namespace``, or everywhere). An object
    changed meanwhile (409) is read and written again; one deleted meanwhile is skipped. Returns
    ``{"rewritten": [namespace/name, ...], "gone": [...]}``: names only, never the objects.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.rewrite "$(salt-call --out=json k8s.config | jq .local)" Secret
    """
    info = kind_info(kind)
    done = {"rewritten": [], "gone": []}
    with _client(config, identity, server) as client:
        if names is None:
            listing = client.request("GET", kubeobjects.path(info, None, namespace), what=f"{kind} list")
            names = [
                "/".join(filter(None, (item["metadata"].get("namespace"), item["metadata"]["name"])))
                for item in listing.get("items") or []
            ]
        for ref in names:
            ns, _, name = ref.rpartition("/")
            path, label = kubeobjects.path(info, name, ns or None), kubeobjects.label(kind, name, ns or None)
            for attempt in range(3):
                live = client.get(path, what=label)
                if live is None:
                    done["gone"].append(ref)
                    break
                answer = client.request("PUT", path, body=live, what=label, missing_ok=(404, 409))
                if answer is not None:
                    done["rewritten"].append(ref)
                    break
                if attempt == 2:
                    raise CommandExecutionError(f"{label} kept changing while it was being rewritten (HTTP 409)")
    return done


def apply(config, manifest, identity="admin", test=False, server=None):
    """
    Make an object look like ``manifest``: read it; if the manifest is a recursive subset of the live object (see
    :py:func:`differences`) send nothing; otherwise send a server-side apply (``fieldManager=kubesalt``,
    ``force=true``), which creates it or updates the fields the manifest sets. With ``test=True`` only read.

    Returns ``{"changed": bool, "action": "created" | "updated" | None, "object": "Kind namespace/name",
    "diff": {path: {"old", "new"}}, "resource_version"}`` (a Secret's data is shown as ``(hidden)``). When the
    server rewrites a value into a form of its own, the apply leaves the object as it was (apart from status and
    the server's bookkeeping: resourceVersion, managedFields) and the result says ``changed: False`` with a
    ``note``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.apply "$(salt-call --out=json k8s.config | jq .local)" \\
            '{kind: Namespace, metadata: {name: demo}}' test=True
    """
    desired, label, path = kubeobjects.target(manifest)
    kind = desired["kind"]
    with _client(config, identity, server) as client:
        live = client.get(path, what=label)
        diff = differences(desired, live) if live is not None else {}
        result = {
            "changed": True,
            "action": "created" if live is None else "updated",
            "object": label,
            "diff": kubeobjects.hide_secret_values(kind, diff),
            "resource_version": (live or {}).get("metadata", {}).get("resourceVersion"),
        }
        if live is not None and not diff:
            result.update(changed=False, action=None)
            return result
        if test:
            return result
        applied = client.request(
            "PATCH",
            path,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=desired,
            content_type="application/apply-patch+yaml",
            what=label,
        )
    if live is not None and kubeobjects.content(applied) == kubeobjects.content(live):
        result.update(
            changed=False,
            action=None,
            note=(
                f"the API server stores {', '.join(diff)} in another form; the apply changed nothing. Write the values "
                "as the server returns them to save the request"
            ),
        )
    result["resource_version"] = (applied or {}).get("metadata", {}).get("resourceVersion")
    log.info("k8s_kube: %s %s", label, result["action"] or "unchanged")
    return result


# --------------------------------------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------------------------------------
def _inventory_node(config, minion_id):
    nodes = config.get("nodes") or {}
    node = nodes.get(str(minion_id))
    if not isinstance(node, dict):
        raise CommandExecutionError(
            f"minion {minion_id!r} is not in k8s:nodes, so it is not a node of this cluster; nodes: "
            f"{', '.join(sorted(str(n) for n in nodes)) or 'none'}"
        )
    roles = node.get("roles") or []
    return [roles] if isinstance(roles, str) else list(roles)


def node_metadata(config, minion_id):
    """
    The labels and taints of node ``minion_id``, from its roles in the ``k8s:nodes`` pillar inventory (never from
    grains, which a minion sets for itself): ``{"labels": {"node-role.kubernetes.io/<role>": ""} for its master and
    worker roles, "taints": [{"key": <k8s:master_taint>, "effect": "NoSchedule"}] on a master, else []}``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.node_metadata "$(salt-call --out=json k8s.config | jq .local)" worker01
    """
    roles = _inventory_node(config, minion_id)
    labels = {f"node-role.kubernetes.io/{role}": "" for role in ("master", "worker") if role in roles}
    taints = []
    if "master" in roles:
        taint = config.get("master_taint")
        if not taint:
            raise SaltInvocationError("k8s:master_taint is empty; masters are tainted with it")
        taints.append({"key": str(taint), "effect": "NoSchedule"})
    return {"labels": labels, "taints": taints}


def register_node(config, minion_id, timeout=None, test=False, server=None, identity="admin"):
    """
    Give node ``minion_id`` its role labels and taints (:py:func:`node_metadata`): wait until its kubelet has
    registered the Node object (up to ``timeout`` seconds, default ``k8s:timeouts:node_ready``), then add what is
    missing with one merge patch, guarded by the resourceVersion that was read (a concurrent change, e.g. the node
    controller's taints, makes it re-read and try again). Labels and taints it did not add are kept. Refuses a
    minion id that is not in ``k8s:nodes``. With ``test=True`` it reads once and reports what it would add.

    Returns ``{"node", "changed": bool, "labels": {added}, "taints": [added], "comment"}``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.register_node "$(salt-call --out=json k8s.config | jq .local)" worker01
    """
    minion_id = str(minion_id)
    wanted = node_metadata(config, minion_id)
    timeout = kubeapi.wait_limit(config, "node_ready", timeout)
    info = kind_info("Node")
    path = kubeobjects.path(info, minion_id)
    label = kubeobjects.label("Node", minion_id)
    result = {"node": minion_id, "changed": False, "labels": {}, "taints": [], "comment": ""}
    with _client(config, identity, server) as client:
        if test:
            node = client.get(path, what=label)
            if node is None:
                result.update(
                    changed=True,
                    labels=wanted["labels"],
                    taints=wanted["taints"],
                    comment=f"Node {minion_id} is not registered yet; its labels and taints would be set "
                    "once its kubelet registers it",
                )
                return result
        else:

            def exists(request_timeout):
                node = client.get(path, what=label, timeout=request_timeout)
                return node is not None, node, f"Node {minion_id} is not registered (no kubelet has created it yet)"

            node = kubeapi.poll(exists, timeout, f"waiting for {label}")
        for attempt in range(1, 6):
            add_labels, add_taints, taints = kubeobjects.missing_metadata(node, wanted)
            result.update(labels=add_labels, taints=add_taints, changed=bool(add_labels or add_taints))
            if not result["changed"]:
                result["comment"] = f"Node {minion_id} has its labels and taints"
                return result
            if test:
                result["comment"] = f"Node {minion_id} would be labelled and tainted"
                return result
            patch = {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]}}
            if add_labels:
                patch["metadata"]["labels"] = add_labels
            if add_taints:
                patch["spec"] = {"taints": taints + add_taints}  # a merge patch replaces the whole list
            try:
                client.merge_patch(path, patch, what=label)
            except kubeapi.KubeApiError as exc:
                if exc.status != 409:
                    raise
                log.info("k8s_kube: %s changed while it was patched (attempt %s); reading it again", label, attempt)
                node = client.get(path, what=label)
                if node is None:
                    raise CommandExecutionError(f"{label} was deleted while it was being registered") from None
                continue
            result["comment"] = f"Node {minion_id} labelled and tainted"
            log.info("k8s_kube: %s: added labels %s, taints %s", label, add_labels, add_taints)
            return result
    raise CommandExecutionError(f"{label} kept changing while it was patched (5 attempts); try again")


def _ca_config(config=None, fetch=True):
    """The settings on the CA minion (it holds the admin certificate); refuses anywhere else. A peer-publish request
    reads them with ``fetch=False`` (``k8s.resolve``: no fileserver round trips)."""
    if config is None:
        config = __salt__["k8s.config"](validate=True, fetch=fetch)
    return peer.on_ca_minion(config, __opts__["id"], "nodes are registered there")


def _bounded(config, timeout, requester):
    """A timeout another minion asked for, held to the CA minion's own k8s:timeouts:node_ready: a caller must not be
    able to keep a job (and a salt-master worker) of the CA minion busy for as long as it likes."""
    limit = config["timeouts"]["node_ready"]
    if timeout is None:
        return limit
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        value = -1.0
    if not 0 <= value <= limit or isinstance(timeout, bool):
        raise SaltInvocationError(
            f"k8s_kube.register_node_remote: minion {requester!r} asked to wait {timeout!r} s; the CA minion waits at "
            f"most k8s:timeouts:node_ready ({limit} s)"
        )
    return value


def register_node_remote(timeout=None, test=False, **kwargs):
    """
    Register the node of the minion that calls this through peer publish, on the CA minion (which holds the admin
    certificate): see :py:func:`register_node`. The node is always the caller, ``__pub_id``, which the salt-master
    sets; there is no argument to name another one. Refuses a call without ``__pub_id`` (not sent through peer
    publish), a caller that is not in ``k8s:nodes``, and any minion but the CA minion.

    The salt-master must allow it: ``peer: {'.*': ['k8s_kube.register_node_remote']}``.

    CLI Example:

    .. code-block:: bash

        salt-call publish.publish master01 k8s_kube.register_node_remote arg="[300]"
    """
    peer.refuse_arguments(
        kwargs, "k8s_kube.register_node_remote", "the node is always the caller (__pub_id), never an argument"
    )
    requester = peer.requester(kwargs, "k8s_kube.register_node_remote")
    config = _ca_config(fetch=False)
    return register_node(config, requester, timeout=_bounded(config, timeout, requester), test=test is True)


def register_node_local(minion_id=None, config=None, timeout=None, test=False, **kwargs):
    """
    Register node ``minion_id`` (default: this minion) from the CA minion itself, which holds the admin
    certificate: see :py:func:`register_node`. Refuses peer-publish calls from other minions (they use
    :py:func:`register_node_remote`) and any minion but the CA minion.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.register_node_local worker01
    """
    peer.refuse_peer(kwargs, "k8s_kube.register_node_local", __opts__["id"])
    config = _ca_config(config)
    return register_node(config, minion_id or __opts__["id"], timeout=timeout, test=test)


def node_ready(config, name, identity="kubelet", server=None):
    """
    Whether Node ``name`` is Ready: ``{"name", "exists", "ready", "reason", "message"}`` from its Ready condition.
    With ``identity=kubelet`` (the default) a node reads its Node object with its own certificate (the Node
    authorizer lets a kubelet read Node objects; NodeRestriction lets it modify only its own).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.node_ready "$(salt-call --out=json k8s.config | jq .local)" worker01
    """
    with _client(config, identity, server) as client:
        return kubeobjects.node_status(
            client.get(kubeobjects.path(kind_info("Node"), name), what=kubeobjects.label("Node", name)), name
        )


def nodes(config, identity="admin", server=None, timeout=5):
    """
    Every Node object, summarized: ``{name: {"ready", "reason", "message", "roles", "kubelet_version",
    "runtime_version"}}``. ``roles`` are the node's ``node-role.kubernetes.io/<role>`` labels; the versions are what
    its kubelet reports (``status.nodeInfo``): the kubelet and container runtime that really run there. One request,
    no wait (``timeout`` seconds for it).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.nodes "$(salt-call --out=json k8s.config | jq .local)"
    """
    with _client(config, identity, server, timeout=float(timeout)) as client:
        items = client.request("GET", kubeobjects.path(kind_info("Node")), what="Node list").get("items") or []
    return dict(kubeobjects.node_summary(node) for node in items)


def wait_node_ready(config, name, timeout=None, identity="kubelet", server=None, interval=POLL_INTERVAL):
    """
    Wait until Node ``name`` is registered and Ready (up to ``timeout`` seconds, default
    ``k8s:timeouts:node_ready``); return its status (see :py:func:`node_ready`), or raise with the last reason.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.wait_node_ready "$(salt-call --out=json k8s.config | jq .local)" worker01 timeout=300
    """
    return nodes_ready(config, [name], timeout=timeout, identity=identity, server=server, interval=interval)[name]


def nodes_ready(config, names, timeout=None, identity="admin", server=None, interval=POLL_INTERVAL):
    """
    Wait until every node in ``names`` is registered and Ready (up to ``timeout`` seconds in all, default
    ``k8s:timeouts:node_ready``); return ``{name: status}`` (see :py:func:`node_ready`). On timeout the error lists
    each node that is not Ready with its reason.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.nodes_ready "$(salt-call --out=json k8s.config | jq .local)" '[worker01, worker02]'
    """
    if isinstance(names, str):
        names = [n for n in names.split(",") if n]
    names = [str(n) for n in names or []]
    if not names:
        raise SaltInvocationError("names: no node names given")
    timeout = kubeapi.wait_limit(config, "node_ready", timeout)
    info = kind_info("Node")
    status = {}
    with _client(config, identity, server) as client:

        def check(request_timeout):
            for name in names:
                if not status.get(name, {}).get("ready"):
                    node = client.get(
                        kubeobjects.path(info, name), what=kubeobjects.label("Node", name), timeout=request_timeout
                    )
                    status[name] = kubeobjects.node_status(node, name)
            waiting = [s for s in status.values() if not s["ready"]]
            detail = "; ".join(f"{s['name']}: {s['reason']} ({s['message']})" for s in waiting)
            return not waiting, status, f"not Ready: {detail}"

        return kubeapi.poll(check, timeout, f"waiting for nodes {', '.join(names)} to be Ready", interval)


def deployment_rollout(deployment):
    """
    Whether a Deployment (the object as the API server returns it) has rolled out and is available, judged the
    way ``kubectl rollout status`` does: ``{"available": bool, "message": str}``. Not available while its
    controller has not seen the latest spec, while fewer replicas than wanted are updated, while old replicas
    remain, or while updated replicas are not available; a Deployment past its progress deadline says so.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.deployment_rollout "$(kubectl get -o json -n kube-system deploy coredns)"
    """
    return kubeobjects.deployment_rollout(deployment)


def deployment_available(config, namespace, name, timeout=None, identity="admin", server=None, interval=POLL_INTERVAL):
    """
    Wait until Deployment ``namespace/name`` has rolled out and is available (see :py:func:`deployment_rollout`),
    up to ``timeout`` seconds (default ``k8s:timeouts:addons_ready``). Returns ``{"available": True, "message"}``;
    raises with the last reason (missing, replicas not available, the Available condition's message) on timeout.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.deployment_available "$(salt-call --out=json k8s.config | jq .local)" kube-system coredns
    """
    timeout = kubeapi.wait_limit(config, "addons_ready", timeout)
    info = kind_info("Deployment")
    label = kubeobjects.label("Deployment", name, namespace)
    with _client(config, identity, server) as client:

        def check(request_timeout):
            live = client.get(kubeobjects.path(info, name, namespace), what=label, timeout=request_timeout)
            if live is None:
                return False, None, f"{label} does not exist"
            rollout = deployment_rollout(live)
            return rollout["available"], rollout, rollout["message"]

        return kubeapi.poll(check, timeout, f"waiting for {label} to be available", interval)


# --------------------------------------------------------------------------------------------------------------------
# Node removal: cordon, drain (the Eviction API, PodDisruptionBudgets honoured), delete
# --------------------------------------------------------------------------------------------------------------------
def drain_plan(pods):
    """
    Sort the pods bound to a node (API objects) as ``kubectl drain`` does: ``evict`` (``namespace/name``: pods a
    controller recreates elsewhere), ``skipped`` (DaemonSet pods, which would come straight back, mirror pods of
    static manifests, finished pods) and ``blocking`` (pods no controller owns: evicting one deletes it for good, so
    kubesalt does not -- delete or move them yourself).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.drain_plan \\
            "$(kubectl get pods -A --field-selector spec.nodeName=worker02 -o json | jq -c .items)"
    """
    return kubeobjects.drain_plan(pods)


def drain(config, name, timeout=None, identity="admin", server=None, test=False, interval=POLL_INTERVAL):
    """
    Cordon Node ``name`` (``spec.unschedulable``) and evict its pods through the Eviction API, so every
    PodDisruptionBudget is honoured: an eviction the budget forbids (HTTP 429) is asked again every ``interval``
    seconds until the budget allows it or ``timeout`` (default ``k8s:timeouts:drain``) has passed, and then the
    drain fails naming each pod still there and the API server's reason. DaemonSet, mirror and finished pods are
    left (see :py:func:`drain_plan`); a pod no controller owns stops the drain before anything is evicted. Returns
    ``node``, ``exists``, ``cordoned`` (changed now), ``evicted``, ``skipped``, ``waited``; ``test=True`` only reads.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.drain "$(salt-call --out=json k8s.config | jq -c .local)" worker02 timeout=300
    """
    timeout = kubeapi.wait_limit(config, "drain", timeout)
    start = time.monotonic()
    info = kind_info("Node")
    result = {"node": name, "exists": True, "cordoned": False, "evicted": [], "skipped": [], "waited": 0}
    with _client(config, identity, server) as client:
        node = client.get(kubeobjects.path(info, name), what=kubeobjects.label("Node", name))
        if node is None:
            return dict(result, exists=False)
        plan = drain_plan(client.pods_on(name))
        result["skipped"] = plan["skipped"]
        if plan["blocking"]:
            raise CommandExecutionError(
                f"Node {name} not drained: pods without a controller would be deleted for good: "
                f"{', '.join(plan['blocking'])}; delete or move them, then run again"
            )
        result["cordoned"] = not (node.get("spec") or {}).get("unschedulable")
        if test:
            result["evicted"] = plan["evict"]
            return result
        if result["cordoned"]:
            client.merge_patch(kubeobjects.path(info, name), {"spec": {"unschedulable": True}}, what=f"cordon {name}")
        api_version = client.eviction_api() if plan["evict"] else None
        refused = {}

        def check(request_timeout):
            current = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in client.pods_on(name)}
            left = [ref for ref in plan["evict"] if ref in current]
            for ref in left:
                if ref in result["evicted"] and not refused.get(ref):
                    continue  # evicted, terminating
                reason = client.evict(ref, api_version, timeout=request_timeout)
                if reason:
                    refused[ref] = reason
                    continue
                refused.pop(ref, None)
                if ref not in result["evicted"]:
                    result["evicted"].append(ref)
            detail = "; ".join(f"{ref}: {refused.get(ref) or 'terminating'}" for ref in left)
            return not left, None, f"pods still on {name}: {detail}"

        if plan["evict"]:
            kubeapi.poll(check, timeout, f"draining Node {name} (PodDisruptionBudgets honoured)", interval)
    result["waited"] = round(time.monotonic() - start, 1)
    return result


def node_patch(config, name, unschedulable=None, annotations=None, identity="admin", server=None, test=False):
    """
    Set Node ``name``'s ``spec.unschedulable`` (unless None) and ``annotations`` (a value of None removes the
    annotation) with a merge patch, when they differ. Returns ``{"changed": bool, "object": "Node name"}``;
    ``test=True`` only reads.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.node_patch "$(salt-call --out=json k8s.config | jq -c .local)" worker02 unschedulable=False
    """
    info = kind_info("Node")
    label = kubeobjects.label("Node", name)
    annotations = dict(annotations or {})
    with _client(config, identity, server) as client:
        node = client.get(kubeobjects.path(info, name), what=label)
        if node is None:
            raise CommandExecutionError(f"{label} does not exist")
        live = (node.get("metadata") or {}).get("annotations") or {}
        body = {}
        changed = {k: v for k, v in annotations.items() if live.get(k) != v and (v is not None or k in live)}
        if changed:
            body["metadata"] = {"annotations": changed}
        if unschedulable is not None and bool((node.get("spec") or {}).get("unschedulable")) != bool(unschedulable):
            body["spec"] = {"unschedulable": bool(unschedulable)}
        if body and not test:
            client.merge_patch(kubeobjects.path(info, name), body, what=label)
    return {"changed": bool(body), "object": label}


def delete_node(config, name, identity="admin", server=None, test=False):
    """
    Delete Node object ``name`` (after :py:func:`drain`). Returns ``{"changed": bool, "object": "Node name"}``. Its
    kubelet must be stopped first, or it registers the node again.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.delete_node "$(salt-call --out=json k8s.config | jq -c .local)" worker02
    """
    return delete(config, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}, identity, test, server)
