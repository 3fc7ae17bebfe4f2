"""
Kubernetes objects as data, for ``k8s_kube``: the kinds kubesalt knows and their REST paths, a manifest checked and
written the way the API server stores it, the compare that decides whether an apply is needed, and what the state of
a Node, a Deployment or a node's pods says. Plain functions over plain values: no HTTP, no Salt dunders.

The rules (what "a recursive subset" means, why empty values match an absent field) are documented on the public
functions of ``_modules/k8s_kube.py`` that call these.
"""

import base64
import copy
import re

from salt.exceptions import SaltInvocationError

# The kinds kubesalt applies, by the API group version that serves them in every release from 1.20 on. Their REST
# resource is the lowercased kind plus "s" for all of them.
_SERVED = {
    "v1": ("Namespace", "Node", "ServiceAccount", "ConfigMap", "Secret", "Service"),
    "apps/v1": ("Deployment", "DaemonSet"),
    "rbac.authorization.k8s.io/v1": ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"),
}
_CLUSTER_SCOPED = {"Namespace", "Node", "ClusterRole", "ClusterRoleBinding"}
# kind -> (apiVersion, plural, namespaced)
KINDS = {
    kind: (api_version, f"{kind.lower()}s", kind not in _CLUSTER_SCOPED)
    for api_version, kinds in _SERVED.items()
    for kind in kinds
}

# Written by the API server on every write, or by controllers: not part of what an apply changes.
_BOOKKEEPING = ("resourceVersion", "managedFields", "generation", "uid", "creationTimestamp", "selfLink")
_ABSENT = object()
_EMPTY = (None, {}, [])
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# --------------------------------------------------------------------------------------------------------------------
# Kinds, paths, names
# --------------------------------------------------------------------------------------------------------------------
def _group(api_version):
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def kind_info(kind):
    """``{"kind", "api_version", "plural", "namespaced"}`` of a kind in ``KINDS``; any other kind is refused."""
    if kind not in KINDS:
        raise SaltInvocationError(f"unknown kind {kind!r}; kubesalt knows: {', '.join(KINDS)}")
    api_version, plural, namespaced = KINDS[kind]
    return {"kind": kind, "api_version": api_version, "plural": plural, "namespaced": namespaced}


def path(info, name=None, namespace=None, api_version=None):
    """The REST path of an object (``name``) or of the list of a kind (``info``: :py:func:`kind_info`)."""
    api_version = api_version or info["api_version"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if info["namespaced"] and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{info['plural']}"
    return f"{base}/{name}" if name else base


def label(kind, name, namespace=None):
    """``Kind namespace/name`` (``Kind name`` when cluster-scoped): how messages name an object."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def ref(manifest):
    """``(kind, namespace or None, name)`` of a manifest that :py:func:`normalize` has checked."""
    metadata = manifest["metadata"]
    return manifest["kind"], metadata.get("namespace") if KINDS[manifest["kind"]][2] else None, metadata["name"]


def target(manifest):
    """``(desired, label, path)`` of a manifest: the copy to send (:py:func:`normalize`), how messages name the
    object, and its REST path."""
    desired = normalize(manifest)
    kind, namespace, name = ref(desired)
    return desired, label(kind, name, namespace), path(kind_info(kind), name, namespace, desired["apiVersion"])


def normalize(manifest):
    """A manifest checked and written as the API server stores it (see ``k8s_kube.normalize``)."""
    if not isinstance(manifest, dict):
        raise SaltInvocationError(f"manifest: expected a mapping with kind and metadata.name, got {manifest!r:.100}")
    info = kind_info(manifest.get("kind"))
    desired = copy.deepcopy(manifest)
    metadata = desired.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        raise SaltInvocationError(f"{info['kind']} manifest has no metadata.name: {manifest!r:.200}")
    name = metadata["name"]
    api_version = desired.setdefault("apiVersion", info["api_version"])
    if _group(str(api_version)) != _group(info["api_version"]):
        raise SaltInvocationError(
            f"{label(info['kind'], name)}: apiVersion {api_version!r} is not in the kind's API group "
            f"(kubesalt sends {info['kind']} as {info['api_version']})"
        )
    if info["namespaced"]:
        metadata.setdefault("namespace", "default")
    elif metadata.get("namespace"):
        raise SaltInvocationError(
            f"{label(info['kind'], name)} is cluster-scoped; remove metadata.namespace ({metadata['namespace']!r})"
        )
    if info["kind"] == "Secret" and desired.get("stringData"):
        data = desired.setdefault("data", {}) or {}
        for key, value in desired.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode("utf-8")).decode("ascii")
        desired["data"] = data
    return desired


def object_key(manifest):
    """``Kind/namespace/name`` (``Kind/name`` when cluster-scoped) of a manifest."""
    return "/".join(p for p in ref(normalize(manifest)) if p)


# --------------------------------------------------------------------------------------------------------------------
# The compare
# --------------------------------------------------------------------------------------------------------------------
def _join(where, key):
    part = key if _PLAIN_KEY.match(str(key)) else f'["{key}"]'
    if not where:
        return part
    return f"{where}.{part}" if _PLAIN_KEY.match(str(key)) else f"{where}{part}"


def _same_scalar(desired, live):
    if isinstance(desired, bool) or isinstance(live, bool):
        return type(desired) is type(live) and desired == live
    if isinstance(desired, (int, float)) and isinstance(live, (int, float)):
        return desired == live
    return type(desired) is type(live) and desired == live


def _diff(desired, live, where, out):
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            if not (live is _ABSENT and not desired):
                out[where or "."] = {"old": None if live is _ABSENT else live, "new": desired}
            return
        for key, value in desired.items():
            if key not in live:
                if not any(value == empty and type(value) is type(empty) for empty in _EMPTY):
                    out[_join(where, key)] = {"old": None, "new": value}
                continue
            _diff(value, live[key], _join(where, key), out)
    elif isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            out[where or "."] = {"old": None if live is _ABSENT else live, "new": desired}
            return
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            _diff(want, have, f"{where}[{index}]", out)
    elif desired is None:
        return  # null in a manifest means "no opinion"; the server drops it
    elif live is _ABSENT or not _same_scalar(desired, live):
        out[where or "."] = {"old": None if live is _ABSENT else live, "new": desired}


def differences(desired, live):
    """What ``desired`` has that ``live`` lacks, ``{path: {"old", "new"}}`` (see ``k8s_kube.differences``)."""
    out = {}
    _diff(desired, live, "", out)
    return out


def content(obj):
    """An object without its status and the metadata the API server keeps for itself."""
    kept = {k: v for k, v in (obj or {}).items() if k != "status"}
    kept["metadata"] = {k: v for k, v in (kept.get("metadata") or {}).items() if k not in _BOOKKEEPING}
    return kept


def hide_secret_values(kind, diff):
    """A diff with a Secret's data shown as ``(hidden)``."""
    if kind != "Secret":
        return diff
    return {
        where: ({"old": "(hidden)", "new": "(hidden)"} if re.match(r"^(data|stringData)\b", where) else change)
        for where, change in diff.items()
    }


# --------------------------------------------------------------------------------------------------------------------
# What live objects say
# --------------------------------------------------------------------------------------------------------------------
def node_status(node, name):
    """``{"name", "exists", "ready", "reason", "message"}`` of a Node object (None: not registered)."""
    if node is None:
        return {
            "name": name,
            "exists": False,
            "ready": False,
            "reason": "NotRegistered",
            "message": f"Node {name} is not registered",
        }
    conditions = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
    ready = conditions.get("Ready") or {}
    return {
        "name": name,
        "exists": True,
        "ready": ready.get("status") == "True",
        "reason": ready.get("reason") or "NoReadyCondition",
        "message": ready.get("message") or "the kubelet has not reported a Ready condition",
    }


def node_summary(node):
    """``(name, {"ready", "reason", "message", "roles", "kubelet_version", "runtime_version"})`` of a Node object."""
    name = (node.get("metadata") or {}).get("name") or "?"
    labels = (node.get("metadata") or {}).get("labels") or {}
    info = (node.get("status") or {}).get("nodeInfo") or {}
    status = node_status(node, name)
    return name, {
        "ready": status["ready"],
        "reason": status["reason"],
        "message": status["message"],
        "roles": sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")),
        "kubelet_version": info.get("kubeletVersion", ""),
        "runtime_version": info.get("containerRuntimeVersion", ""),
    }


def missing_metadata(node, wanted):
    """``(labels to add, taints to add, the node's taints)`` for ``wanted`` (``{"labels", "taints"}``)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    taints = (node.get("spec") or {}).get("taints") or []
    add_labels = {k: v for k, v in wanted["labels"].items() if labels.get(k) != v}
    have = {(t.get("key"), t.get("effect")) for t in taints}
    add_taints = [t for t in wanted["taints"] if (t["key"], t["effect"]) not in have]
    return add_labels, add_taints, taints


def deployment_rollout(deployment):
    """``{"available": bool, "message"}`` of a Deployment object, as ``kubectl rollout status`` judges it."""
    metadata, spec, status = (deployment.get(k) or {} for k in ("metadata", "spec", "status"))
    name = label("Deployment", metadata.get("name"), metadata.get("namespace"))
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    available = conditions.get("Available") or {}
    why = (
        f" (Available: {available.get('status')}, {available.get('reason')}: {available.get('message')})"
        if available
        else ""
    )
    if int(metadata.get("generation") or 0) > int(status.get("observedGeneration") or 0):
        return {
            "available": False,
            "message": f"{name}: the controller has not observed the latest spec yet "
            "(is kube-controller-manager running?)",
        }
    progressing = conditions.get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return {
            "available": False,
            "message": f"{name} exceeded its progress deadline: {progressing.get('message')}{why}",
        }
    wanted = spec.get("replicas", 1)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    ready = int(status.get("availableReplicas") or 0)
    if updated < wanted:
        return {"available": False, "message": f"{name}: {updated} of {wanted} replicas updated{why}"}
    if total > updated:
        return {"available": False, "message": f"{name}: {total - updated} old replicas pending termination{why}"}
    if ready < updated:
        return {"available": False, "message": f"{name}: {ready} of {updated} updated replicas available{why}"}
    return {"available": True, "message": f"{name}: {ready} of {wanted} replicas available"}


def drain_plan(pods):
    """The pods bound to a node sorted as ``kubectl drain`` does: ``{"evict", "skipped", "blocking"}``."""
    plan = {"evict": [], "skipped": [], "blocking": []}
    for pod in pods:
        meta = pod.get("metadata") or {}
        name = f"{meta.get('namespace')}/{meta.get('name')}"
        owners = [o for o in meta.get("ownerReferences") or [] if o.get("controller")]
        if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
            plan["skipped"].append(f"{name} (mirror pod)")
        elif any(o.get("kind") == "DaemonSet" for o in owners):
            plan["skipped"].append(f"{name} (DaemonSet)")
        elif (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            plan["skipped"].append(f"{name} (finished)")
        elif not owners:
            plan["blocking"].append(name)
        else:
            plan["evict"].append(name)
    return plan
