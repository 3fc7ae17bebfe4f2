"""
kubesalt's Kubernetes API client, for ``k8s_kube``: HTTPS with a client certificate from kubesalt's PKI (no kubectl,
no Kubernetes client library), the errors it raises, and the bounded wait every readiness check uses. Plain Python:
the caller passes the settings and, for messages, the minion id.
"""

import os
import re
import time

import requests  # a dependency of Salt itself
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import http, pki

REQUEST_TIMEOUT = 10  # seconds for connecting and for each answer
POLL_INTERVAL = 2
_TRANSIENT = (429, 500, 502, 503, 504)  # statuses a wait tries again after


class KubeApiError(CommandExecutionError):
    """The API server answered with an error status (``status``: the HTTP status)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class KubeUnreachable(CommandExecutionError):
    """No answer: connection refused, TLS failure, timeout. A wait may try again."""


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

    def merge_patch(self, path, body, what):
        """A JSON merge patch of the object at ``path``."""
        return self.request("PATCH", path, body=body, content_type="application/merge-patch+json", what=what)

    def readyz(self, timeout):
        """``/readyz?verbose``: ``{"ready", "url", "status", "failed", "error"}`` (see ``k8s_kube.readyz``)."""
        url = f"{self.server}/readyz"
        result = {"ready": False, "url": url, "status": None, "failed": [], "error": ""}
        try:
            answer = self.session.get(url, params={"verbose": "true"}, timeout=(timeout, timeout))
        except requests.exceptions.RequestException as exc:
            return dict(result, error=str(self._unreachable("GET", url, exc, timeout)))
        if answer.status_code == 401:
            raise KubeApiError(
                f"GET {url}: HTTP 401: {answer.text.strip()[:200]}; client certificate {self.cert} is not accepted "
                "(is it signed by the cluster's Kubernetes CA?)",
                status=401,
            )
        if answer.status_code == 403:
            # Authenticated but not (yet) allowed: right after a first start, the RBAC bootstrap policy that lets
            # every authenticated user read /readyz (system:public-info-viewer) is still being written. Not ready yet.
            return dict(
                result,
                status=403,
                error=f"HTTP 403 (RBAC bootstrap policy not in place yet?): {answer.text.strip()[:200]}",
            )
        failed = [line[3:].strip() for line in answer.text.splitlines() if line.startswith("[-]")]
        result.update(ready=answer.status_code == 200, status=answer.status_code, failed=failed)
        if not result["ready"]:
            result["error"] = f"HTTP {answer.status_code}" + (
                f", failed checks: {'; '.join(failed)}" if failed else f": {answer.text.strip()[:200]}"
            )
        return result

    def version(self):
        """The API server's ``/version`` answer."""
        return self.request("GET", "/version", what="version") or {}

    def eviction_api(self):
        """The Eviction body's group version this API server takes: policy/v1 from Kubernetes 1.22, before that
        v1beta1."""
        version = self.version()
        minor = int(re.sub(r"\D.*$", "", str(version.get("minor") or "0")) or 0)
        return "policy/v1" if (str(version.get("major")) != "1" or minor >= 22) else "policy/v1beta1"

    def pods_on(self, node, timeout=None):
        """The pods bound to Node ``node``."""
        answer = self.request(
            "GET",
            "/api/v1/pods",
            params={"fieldSelector": f"spec.nodeName={node}"},
            what=f"pods on {node}",
            timeout=timeout,
        )
        return answer.get("items") or []

    def evict(self, ref, api_version, timeout=None):
        """Ask the Eviction API to evict pod ``ref`` (``namespace/name``); return None when it is evicted (or gone),
        else the reason a PodDisruptionBudget refuses it now (HTTP 429). Any other refusal raises."""
        namespace, pod = ref.split("/", 1)
        body = {"apiVersion": api_version, "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}}
        try:
            self.request(
                "POST",
                f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction",
                body=body,
                what=f"eviction of pod {ref}",
                missing_ok=(404,),
                timeout=timeout,
            )
        except KubeApiError as exc:
            if exc.status != 429:
                raise
            return str(exc).split(": HTTP 429: ", 1)[-1]
        return None


# --------------------------------------------------------------------------------------------------------------------
# Connection from the settings
# --------------------------------------------------------------------------------------------------------------------
def server_url(config, server=None):
    """The API server URL a minion uses: ``server`` when given, else ``config['cluster']['api_url']``."""
    if server:
        return str(server).rstrip("/")
    url = pki.cluster_facts(config).get("api_url")
    if not url:
        raise SaltInvocationError(
            "no API server URL: config['cluster']['api_url'] is empty (set k8s:apiserver:endpoint, or give the "
            "first master an ip in k8s:nodes), and no server= was given"
        )
    return str(url).rstrip("/")


def connect(config, identity, server=None, timeout=REQUEST_TIMEOUT, minion_id=None):
    """A :py:class:`KubeClient` with the certificate of ``identity`` (``pki.layout``), verifying the server with the
    Kubernetes CA bundle; a certificate missing on this minion (``minion_id``, for the message) is refused."""
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
                f"{pki.cluster_facts(config).get('minion_id') or minion_id!r} (does it hold {identity!r}? see "
                "k8s_pki.entitlements)"
            )
    ca = files["cas"]["kubernetes-ca"]["bundle"]
    return KubeClient(server_url(config, server), ca, spec["cert"], spec["key"], timeout=timeout)


# --------------------------------------------------------------------------------------------------------------------
# Bounded waits
# --------------------------------------------------------------------------------------------------------------------
def wait_limit(config, key, timeout):
    """``timeout`` in seconds, or ``k8s:timeouts:<key>`` when it is None; a bad value is refused."""
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


def poll(check, timeout, what, interval=POLL_INTERVAL):
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
