"""
kubesalt Kubernetes API client: readiness, server-side apply with a compare first, and node registration (role labels,
the master taint). The objects kubesalt puts into a cluster are built as data by ``k8s_conf`` (``cluster_objects``,
``coredns_objects`` from ``formulas/k8s/addons/coredns.yaml``); this module only talks to the API server.

How it talks to the API server
------------------------------
HTTPS with ``requests`` and a client certificate from kubesalt's PKI; no kubectl, no Kubernetes client library.
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

import base64
import copy
import logging
import os
import re
import time

import requests  # a dependency of Salt itself
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import http, peer, pki

log = logging.getLogger(__name__)

__virtualname__ = "k8s_kube"

FIELD_MANAGER = "kubesalt"
REQUEST_TIMEOUT = 10  # seconds for connecting and for each answer
POLL_INTERVAL = 2
_TRANSIENT = (429, 500, 502, 503, 504)  # statuses a wait tries again after

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


def __virtual__():
    return __virtualname__


# --------------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------------
class KubeApiError(CommandExecutionError):
    """The API server answered with an error status (``status``: the HTTP status)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class KubeUnreachable(CommandExecutionError):
    """No answer: connection refused, TLS failure, timeout. A wait may try again."""


# --------------------------------------------------------------------------------------------------------------------
# Kinds, paths and the compare (pure)
# --------------------------------------------------------------------------------------------------------------------
def _group(api_version):
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def kind_info(kind):
    """
    ``{"kind", "api_version", "plural", "namespaced"}`` of a kind kubesalt knows (see ``KINDS``); any other kind is
    refused, naming the known ones.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.kind_info Deployment
    """
    if kind not in KINDS:
        raise SaltInvocationError(f"unknown kind {kind!r}; kubesalt knows: {', '.join(KINDS)}")
    api_version, plural, namespaced = KINDS[kind]
    return {"kind": kind, "api_version": api_version, "plural": plural, "namespaced": namespaced}


def _path(info, name=None, namespace=None, api_version=None):
    api_version = api_version or info["api_version"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if info["namespaced"] and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{info['plural']}"
    return f"{base}/{name}" if name else base


def _label(kind, name, namespace=None):
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def normalize(manifest):
    """
    Check a manifest and return the copy kubesalt sends: ``apiVersion`` filled in from ``KINDS`` when absent (when
    present, its API group must be the kind's), ``metadata.namespace`` set to ``default`` for a namespaced kind
    that has none, and a Secret's ``stringData`` folded into ``data`` (base64), as the API server stores it.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.normalize '{kind: ConfigMap, metadata: {name: a}, data: {x: "1"}}'
    """
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
            f"{_label(info['kind'], name)}: apiVersion {api_version!r} is not in the kind's API group "
            f"(kubesalt sends {info['kind']} as {info['api_version']})"
        )
    if info["namespaced"]:
        metadata.setdefault("namespace", "default")
    elif metadata.get("namespace"):
        raise SaltInvocationError(
            f"{_label(info['kind'], name)} is cluster-scoped; remove metadata.namespace ({metadata['namespace']!r})"
        )
    if info["kind"] == "Secret" and desired.get("stringData"):
        data = desired.setdefault("data", {}) or {}
        for key, value in desired.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode("utf-8")).decode("ascii")
        desired["data"] = data
    return desired


def _ref(manifest):
    metadata = manifest["metadata"]
    return manifest["kind"], metadata.get("namespace") if KINDS[manifest["kind"]][2] else None, metadata["name"]


def object_key(manifest):
    """
    ``Kind/namespace/name`` (``Kind/name`` when cluster-scoped) of a manifest: the key under which
    ``k8s_kube.objects_present`` reports it.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.object_key '{kind: Service, metadata: {name: kube-dns, namespace: kube-system}}'
    """
    kind, namespace, name = _ref(normalize(manifest))
    return "/".join(p for p in (kind, namespace, name) if p)


_ABSENT = object()
_EMPTY = (None, {}, [])
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _join(path, key):
    part = key if _PLAIN_KEY.match(str(key)) else f'["{key}"]'
    if not path:
        return part
    return f"{path}.{part}" if _PLAIN_KEY.match(str(key)) else f"{path}{part}"


def _same_scalar(desired, live):
    if isinstance(desired, bool) or isinstance(live, bool):
        return type(desired) is type(live) and desired == live
    if isinstance(desired, (int, float)) and isinstance(live, (int, float)):
        return desired == live
    return type(desired) is type(live) and desired == live


def _diff(desired, live, path, out):
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            if not (live is _ABSENT and not desired):
                out[path or "."] = {"old": None if live is _ABSENT else live, "new": desired}
            return
        for key, value in desired.items():
            if key not in live:
                if not any(value == empty and type(value) is type(empty) for empty in _EMPTY):
                    out[_join(path, key)] = {"old": None, "new": value}
                continue
            _diff(value, live[key], _join(path, key), out)
    elif isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            out[path or "."] = {"old": None if live is _ABSENT else live, "new": desired}
            return
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            _diff(want, have, f"{path}[{index}]", out)
    elif desired is None:
        return  # null in a manifest means "no opinion"; the server drops it
    elif live is _ABSENT or not _same_scalar(desired, live):
        out[path or "."] = {"old": None if live is _ABSENT else live, "new": desired}


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
    out = {}
    _diff(desired, live, "", out)
    return out


# Written by the API server on every write, or by controllers: not part of what an apply changes.
_BOOKKEEPING = ("resourceVersion", "managedFields", "generation", "uid", "creationTimestamp", "selfLink")


def _content(obj):
    """An object without its status and the metadata the API server keeps for itself."""
    content = {k: v for k, v in (obj or {}).items() if k != "status"}
    content["metadata"] = {k: v for k, v in (content.get("metadata") or {}).items() if k not in _BOOKKEEPING}
    return content


def _hide_secret_values(kind, diff):
    if kind != "Secret":
        return diff
    return {
        path: ({"old": "(hidden)", "new": "(hidden)"} if re.match(r"^(data|stringData)\b", path) else change)
        for path, change in diff.items()
    }


# --------------------------------------------------------------------------------------------------------------------
# The client (plain Python, no Salt dunders)
# --------------------------------------------------------------------------------------------------------------------
class KubeClient(http.Client):
    """
    A connection to one API server with one client certificate. Use as a context manager so the HTTP session is
    closed. :py:meth:`request` returns the decoded JSON answer, or None for a status listed in ``missing_ok``.
    """

    server_name = "the API server"

    def __init__(self, server, ca, cert, key, timeout=REQUEST_TIMEOUT):
        server = str(server or "").rstrip("/")
        if not re.match(r"^https://[^/\s]+$", server):
            raise SaltInvocationError(f"API server {server!r} must be an https://host:port URL")
        super().__init__(ca, cert, key)
        self.server, self.timeout = server, float(timeout)

    def _unreachable(self, method, url, exc, wait=None):
        return KubeUnreachable(f"{method} {url}: {self.failure(exc, wait or self.timeout)}")

    def request(self, method, path, params=None, body=None, content_type=None, what=None, missing_ok=(), timeout=None):
        url = self.server + path
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        wait = self.timeout if timeout is None else max(float(timeout), 0.1)
        try:
            answer = self.session.request(method, url, params=params, json=body, headers=headers, timeout=(wait, wait))
        except requests.exceptions.RequestException as exc:
            raise self._unreachable(method, url, exc, wait) from exc
        if answer.status_code in missing_ok:
            return None
        try:
            data = answer.json()
        except ValueError:
            data = None
        if 200 <= answer.status_code < 300:
            return data
        message = (data or {}).get("message") if isinstance(data, dict) else None
        message = message or answer.text.strip()[:300] or answer.reason
        hint = ""
        if answer.status_code == 401:
            hint = (
                f"; the API server did not accept client certificate {self.cert} (not signed by the CA in its "
                "--client-ca-file, or expired)"
            )
        subject = f" ({what})" if what else ""
        raise KubeApiError(
            f"{method} {url}{subject}: HTTP {answer.status_code}: {message}{hint}", status=answer.status_code
        )

    def get(self, path, what=None, timeout=None):
        """The object at ``path``, or None when it does not exist (404)."""
        return self.request("GET", path, what=what, missing_ok=(404,), timeout=timeout)


# --------------------------------------------------------------------------------------------------------------------
# Connection from the settings
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
    if server:
        return str(server).rstrip("/")
    url = pki.cluster_facts(config).get("api_url")
    if not url:
        raise SaltInvocationError(
            "no API server URL: config['cluster']['api_url'] is empty (set k8s:apiserver:endpoint, or give the "
            "first master an ip in k8s:nodes), and no server= was given"
        )
    return str(url).rstrip("/")


def _client(config, identity, server=None, timeout=REQUEST_TIMEOUT):
    files = pki.layout(config)
    if identity not in files["certificates"]:
        raise SaltInvocationError(
            f"identity: unknown certificate identity {identity!r}; known: {', '.join(files['certificates'])}"
        )
    spec = files["certificates"][identity]
    for path in (spec["cert"], spec["key"]):
        if not os.path.isfile(path):
            raise SaltInvocationError(
                f"client certificate for identity {identity!r} is missing: {path} does not exist on minion "
                f"{pki.cluster_facts(config).get('minion_id') or __opts__.get('id')!r} (does it hold {identity!r}? see "
                "k8s_pki.entitlements)"
            )
    ca = files["cas"]["kubernetes-ca"]["bundle"]
    return KubeClient(api_server(config, server), ca, spec["cert"], spec["key"], timeout=timeout)


def _timeout(config, key, timeout):
    if timeout is None:
        timeout = (config.get("timeouts") or {}).get(key)
        if timeout is None:
            raise SaltInvocationError(f"no timeout given and k8s:timeouts:{key} is not set")
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        raise SaltInvocationError(f"timeout {timeout!r} is not a number of seconds") from None
    if timeout < 0:
        raise SaltInvocationError(f"timeout {timeout!r} must not be negative")
    return timeout


def _poll(check, timeout, what, interval=POLL_INTERVAL):
    """
    Call ``check(request_timeout)`` until it returns ``(True, value, detail)``; return ``value``. An unreachable or
    overloaded API server (no answer, HTTP 429 or 5xx) counts as "not yet"; any other error (401, 403, 404 of a
    namespace...) ends the wait at once. After ``timeout`` seconds in all, raise with the last detail.
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            done, value, detail = check(min(REQUEST_TIMEOUT, max(remaining, 1.0)))
        except KubeUnreachable as exc:
            done, value, detail = False, None, str(exc)
        except KubeApiError as exc:
            if exc.status not in _TRANSIENT:
                raise
            done, value, detail = False, None, str(exc)
        if done:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CommandExecutionError(f"{what}: not done after {timeout:g} s; last: {detail}")
        time.sleep(min(interval, remaining))


# --------------------------------------------------------------------------------------------------------------------
# Readiness
# --------------------------------------------------------------------------------------------------------------------
def _readyz(client, timeout):
    url = f"{client.server}/readyz"
    try:
        answer = client.session.get(url, params={"verbose": "true"}, timeout=(timeout, timeout))
    except requests.exceptions.RequestException as exc:
        return {
            "ready": False,
            "url": url,
            "status": None,
            "failed": [],
            "error": str(client._unreachable("GET", url, exc, timeout)),
        }
    if answer.status_code == 401:
        raise KubeApiError(
            f"GET {url}: HTTP 401: {answer.text.strip()[:200]}; client certificate {client.cert} is not accepted "
            "(is it signed by the cluster's Kubernetes CA?)",
            status=401,
        )
    if answer.status_code == 403:
        # Authenticated but not (yet) allowed: right after a first start, the RBAC bootstrap policy that lets every
        # authenticated user read /readyz (system:public-info-viewer) is still being written. Not ready yet.
        return {
            "ready": False,
            "url": url,
            "status": 403,
            "failed": [],
            "error": f"HTTP 403 (RBAC bootstrap policy not in place yet?): {answer.text.strip()[:200]}",
        }
    failed = [line[3:].strip() for line in answer.text.splitlines() if line.startswith("[-]")]
    ready = answer.status_code == 200
    result = {"ready": ready, "url": url, "status": answer.status_code, "failed": failed, "error": ""}
    if not ready:
        result["error"] = f"HTTP {answer.status_code}" + (
            f", failed checks: {'; '.join(failed)}" if failed else f": {answer.text.strip()[:200]}"
        )
    return result


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
        return _readyz(client, float(timeout))


def server_version(config, identity="apiserver-kubelet-client", server=None):
    """
    The API server's version from its ``/version`` (``gitVersion``, e.g. ``v1.37.1``); every authenticated user may
    read it.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.server_version "$(salt-call --out=json k8s.config | jq .local)"
    """
    with _client(config, identity, server) as client:
        return str((client.request("GET", "/version", what="version") or {}).get("gitVersion") or "")


def wait_ready(config, timeout=None, identity="apiserver-kubelet-client", server=None, interval=POLL_INTERVAL):
    """
    Poll ``/readyz`` until the API server is ready; return the last answer (see :py:func:`readyz`) with
    ``waited`` (seconds). Raises after ``timeout`` seconds in all (default ``k8s:timeouts:apiserver_ready``),
    naming the URL and the last error.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.wait_ready "$(salt-call --out=json k8s.config | jq .local)" timeout=120
    """
    timeout = _timeout(config, "apiserver_ready", timeout)
    start = time.monotonic()
    with _client(config, identity, server) as client:

        def check(request_timeout):
            answer = _readyz(client, request_timeout)
            return answer["ready"], answer, answer["error"]

        answer = _poll(check, timeout, f"kube-apiserver at {client.server}/readyz", interval)
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
        kind, namespace, name = _ref(manifest)
        api_version = manifest["apiVersion"]
    else:
        api_version = None
    info = kind_info(kind)
    if info["namespaced"] and name and not namespace:
        namespace = "default"
    with _client(config, identity, server) as client:
        if name:
            return client.get(_path(info, name, namespace, api_version), what=_label(kind, name, namespace))
        answer = client.request("GET", _path(info, None, namespace, api_version), what=f"{kind} list")
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
    desired = normalize(manifest)
    kind, namespace, name = _ref(desired)
    info = kind_info(kind)
    label = _label(kind, name, namespace)
    with _client(config, identity, server) as client:
        path = _path(info, name, namespace, desired["apiVersion"])
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
            listing = client.request("GET", _path(info, None, namespace), what=f"{kind} list")
            names = [
                "/".join(filter(None, (item["metadata"].get("namespace"), item["metadata"]["name"])))
                for item in listing.get("items") or []
            ]
        for ref in names:
            ns, _, name = ref.rpartition("/")
            path, label = _path(info, name, ns or None), _label(kind, name, ns or None)
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
    desired = normalize(manifest)
    kind, namespace, name = _ref(desired)
    info = kind_info(kind)
    label = _label(kind, name, namespace)
    path = _path(info, name, namespace, desired["apiVersion"])
    with _client(config, identity, server) as client:
        live = client.get(path, what=label)
        diff = differences(desired, live) if live is not None else {}
        result = {
            "changed": True,
            "action": "created" if live is None else "updated",
            "object": label,
            "diff": _hide_secret_values(kind, diff),
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
    if live is not None and _content(applied) == _content(live):
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


def _missing_metadata(node, wanted):
    labels = (node.get("metadata") or {}).get("labels") or {}
    taints = (node.get("spec") or {}).get("taints") or []
    add_labels = {k: v for k, v in wanted["labels"].items() if labels.get(k) != v}
    have = {(t.get("key"), t.get("effect")) for t in taints}
    add_taints = [t for t in wanted["taints"] if (t["key"], t["effect"]) not in have]
    return add_labels, add_taints, taints


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
    timeout = _timeout(config, "node_ready", timeout)
    info = kind_info("Node")
    path = _path(info, minion_id)
    label = _label("Node", minion_id)
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

            node = _poll(exists, timeout, f"waiting for {label}")
        for attempt in range(1, 6):
            add_labels, add_taints, taints = _missing_metadata(node, wanted)
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
                client.request("PATCH", path, body=patch, content_type="application/merge-patch+json", what=label)
            except KubeApiError as exc:
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


def _node_status(node, name):
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
        return _node_status(client.get(_path(kind_info("Node"), name), what=_label("Node", name)), name)


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
        items = client.request("GET", _path(kind_info("Node")), what="Node list").get("items") or []
    summary = {}
    for node in items:
        name = (node.get("metadata") or {}).get("name") or "?"
        labels = (node.get("metadata") or {}).get("labels") or {}
        info = (node.get("status") or {}).get("nodeInfo") or {}
        status = _node_status(node, name)
        summary[name] = {
            "ready": status["ready"],
            "reason": status["reason"],
            "message": status["message"],
            "roles": sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")),
            "kubelet_version": info.get("kubeletVersion", ""),
            "runtime_version": info.get("containerRuntimeVersion", ""),
        }
    return summary


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
    timeout = _timeout(config, "node_ready", timeout)
    info = kind_info("Node")
    status = {}
    with _client(config, identity, server) as client:

        def check(request_timeout):
            for name in names:
                if not status.get(name, {}).get("ready"):
                    node = client.get(_path(info, name), what=_label("Node", name), timeout=request_timeout)
                    status[name] = _node_status(node, name)
            waiting = [s for s in status.values() if not s["ready"]]
            detail = "; ".join(f"{s['name']}: {s['reason']} ({s['message']})" for s in waiting)
            return not waiting, status, f"not Ready: {detail}"

        return _poll(check, timeout, f"waiting for nodes {', '.join(names)} to be Ready", interval)


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
    metadata, spec, status = (deployment.get(k) or {} for k in ("metadata", "spec", "status"))
    label = _label("Deployment", metadata.get("name"), metadata.get("namespace"))
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
            "message": f"{label}: the controller has not observed the latest spec yet "
            "(is kube-controller-manager running?)",
        }
    progressing = conditions.get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return {
            "available": False,
            "message": f"{label} exceeded its progress deadline: {progressing.get('message')}{why}",
        }
    wanted = spec.get("replicas", 1)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    ready = int(status.get("availableReplicas") or 0)
    if updated < wanted:
        return {"available": False, "message": f"{label}: {updated} of {wanted} replicas updated{why}"}
    if total > updated:
        return {"available": False, "message": f"{label}: {total - updated} old replicas pending termination{why}"}
    if ready < updated:
        return {"available": False, "message": f"{label}: {ready} of {updated} updated replicas available{why}"}
    return {"available": True, "message": f"{label}: {ready} of {wanted} replicas available"}


def deployment_available(config, namespace, name, timeout=None, identity="admin", server=None, interval=POLL_INTERVAL):
    """
    Wait until Deployment ``namespace/name`` has rolled out and is available (see :py:func:`deployment_rollout`),
    up to ``timeout`` seconds (default ``k8s:timeouts:addons_ready``). Returns ``{"available": True, "message"}``;
    raises with the last reason (missing, replicas not available, the Available condition's message) on timeout.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_kube.deployment_available "$(salt-call --out=json k8s.config | jq .local)" kube-system coredns
    """
    timeout = _timeout(config, "addons_ready", timeout)
    info = kind_info("Deployment")
    label = _label("Deployment", name, namespace)
    with _client(config, identity, server) as client:

        def check(request_timeout):
            live = client.get(_path(info, name, namespace), what=label, timeout=request_timeout)
            if live is None:
                return False, None, f"{label} does not exist"
            rollout = deployment_rollout(live)
            return rollout["available"], rollout, rollout["message"]

        return _poll(check, timeout, f"waiting for {label} to be available", interval)


# --------------------------------------------------------------------------------------------------------------------
# Node removal: cordon, drain (the Eviction API, PodDisruptionBudgets honoured), delete
# --------------------------------------------------------------------------------------------------------------------
def _eviction_api(client):
    """The Eviction body's group version this API server takes: policy/v1 from Kubernetes 1.22, before that v1beta1."""
    version = client.request("GET", "/version", what="version") or {}
    minor = int(re.sub(r"\D.*$", "", str(version.get("minor") or "0")) or 0)
    return "policy/v1" if (str(version.get("major")) != "1" or minor >= 22) else "policy/v1beta1"


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
    plan = {"evict": [], "skipped": [], "blocking": []}
    for pod in pods:
        meta = pod.get("metadata") or {}
        ref = f"{meta.get('namespace')}/{meta.get('name')}"
        owners = [o for o in meta.get("ownerReferences") or [] if o.get("controller")]
        if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
            plan["skipped"].append(f"{ref} (mirror pod)")
        elif any(o.get("kind") == "DaemonSet" for o in owners):
            plan["skipped"].append(f"{ref} (DaemonSet)")
        elif (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            plan["skipped"].append(f"{ref} (finished)")
        elif not owners:
            plan["blocking"].append(ref)
        else:
            plan["evict"].append(ref)
    return plan


def _pods_on(client, name, timeout=None):
    answer = client.request(
        "GET",
        "/api/v1/pods",
        params={"fieldSelector": f"spec.nodeName={name}"},
        what=f"pods on {name}",
        timeout=timeout,
    )
    return answer.get("items") or []


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
    timeout = _timeout(config, "drain", timeout)
    start = time.monotonic()
    info = kind_info("Node")
    result = {"node": name, "exists": True, "cordoned": False, "evicted": [], "skipped": [], "waited": 0}
    with _client(config, identity, server) as client:
        node = client.get(_path(info, name), what=_label("Node", name))
        if node is None:
            return dict(result, exists=False)
        plan = drain_plan(_pods_on(client, name))
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
            client.request(
                "PATCH",
                _path(info, name),
                body={"spec": {"unschedulable": True}},
                content_type="application/merge-patch+json",
                what=f"cordon {name}",
            )
        api_version = _eviction_api(client) if plan["evict"] else None
        refused = {}

        def check(request_timeout):
            current = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in _pods_on(client, name)}
            left = [ref for ref in plan["evict"] if ref in current]
            for ref in left:
                if ref in result["evicted"] and not refused.get(ref):
                    continue  # evicted, terminating
                namespace, pod = ref.split("/", 1)
                body = {
                    "apiVersion": api_version,
                    "kind": "Eviction",
                    "metadata": {"name": pod, "namespace": namespace},
                }
                try:
                    client.request(
                        "POST",
                        f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction",
                        body=body,
                        what=f"eviction of pod {ref}",
                        missing_ok=(404,),
                        timeout=request_timeout,
                    )
                    refused.pop(ref, None)
                    if ref not in result["evicted"]:
                        result["evicted"].append(ref)
                except KubeApiError as exc:
                    if exc.status != 429:
                        raise
                    refused[ref] = str(exc).split(": HTTP 429: ", 1)[-1]
            detail = "; ".join(f"{ref}: {refused.get(ref) or 'terminating'}" for ref in left)
            return not left, None, f"pods still on {name}: {detail}"

        if plan["evict"]:
            _poll(check, timeout, f"draining Node {name} (PodDisruptionBudgets honoured)", interval)
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
    label = _label("Node", name)
    annotations = dict(annotations or {})
    with _client(config, identity, server) as client:
        node = client.get(_path(info, name), what=label)
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
            client.request(
                "PATCH", _path(info, name), body=body, content_type="application/merge-patch+json", what=label
            )
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
