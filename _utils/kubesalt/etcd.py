"""
kubesalt's etcd v3 client: etcd's own JSON gateway (grpc-gateway, built into every etcd >= 3.4) over HTTPS with a
client certificate, through ``requests``. Plain Python: ``k8s_etcd`` (the execution module) wraps it for Salt, and
its module docstring says how it talks to etcd, which endpoints it tries and when a request is retried.

Keys and values travel base64-encoded, 64-bit integers as JSON strings, and fields equal to their zero value are
left out (``"succeeded": false`` is simply absent), exactly as the gateway does it.
"""

import base64
import json as jsonlib
import logging
import time

import requests  # a dependency of Salt itself
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import http, pki

log = logging.getLogger(__name__)

API = "/v3"
DEFAULT_TIMEOUT = 5

# The client identity (k8s_pki) kubesalt uses by default: masters hold the first, etcd members the second.
CLIENT_IDENTITIES = ("apiserver-etcd-client", "etcd-healthcheck-client")


# --------------------------------------------------------------------------------------------------------------------
# Values and keys (pure)
# --------------------------------------------------------------------------------------------------------------------
def _b64(text):
    data = text if isinstance(text, bytes) else str(text).encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def _unb64(data):
    return base64.b64decode(data or "").decode("utf-8", errors="backslashreplace")


def check_key(name, what="key"):
    if not isinstance(name, str) or not name.startswith("/"):
        raise SaltInvocationError(
            f"etcd {what} {name!r} must be a string starting with '/' (e.g. /coreos.com/network/config)"
        )
    return name


def _prefix_end(prefix):
    """The range_end that selects every key starting with ``prefix`` (etcd's GetPrefixRangeEnd)."""
    data = bytearray(prefix.encode("utf-8"))
    for i in reversed(range(len(data))):
        if data[i] < 0xFF:
            data[i] += 1
            return bytes(data[: i + 1])
    return b"\0"


def render_value(value, json=False, name=None):
    """The exact string stored for ``value``: canonical JSON with ``json=True``, else the string itself (the rules
    are in ``k8s_etcd.render_value``)."""
    what = f" for etcd key {name}" if name else ""
    if json:
        data = value
        if isinstance(value, (str, bytes)):
            try:
                data = jsonlib.loads(value)
            except ValueError as exc:
                raise SaltInvocationError(f"value{what} is not valid JSON ({exc}): {value!r}") from exc
        try:
            return jsonlib.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise SaltInvocationError(f"value{what} cannot be written as JSON ({exc}): {value!r}") from exc
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list, tuple)):
        raise SaltInvocationError(
            f"value{what} must be a string, got {type(value).__name__} {value!r}; pass json=True to store data as JSON"
        )
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def same_value(current, desired, json=False):
    """Whether two stored values are the same; with ``json=True`` as data (see ``k8s_etcd.same_value``)."""
    if current is None or desired is None:
        return current is desired
    if json:
        try:
            return jsonlib.loads(current) == jsonlib.loads(desired)
        except (TypeError, ValueError):
            pass
    return current == desired


def _kv(raw):
    """A gateway ``kvs`` entry as plain Python: key and value decoded, revisions as ints."""
    return {
        "key": _unb64(raw.get("key")),
        "value": _unb64(raw.get("value")),
        "create_revision": int(raw.get("create_revision", 0)),
        "mod_revision": int(raw.get("mod_revision", 0)),
        "version": int(raw.get("version", 0)),
    }


def _revision(answer):
    return int((answer.get("header") or {}).get("revision", 0))


def _as_list(endpoints):
    if endpoints is None:
        return []
    if isinstance(endpoints, str):
        endpoints = endpoints.split(",")
    return [str(e).strip().rstrip("/") for e in endpoints if str(e).strip()]


def _lock_holder(entry):
    """Who holds a lock key (its JSON value), for messages."""
    if entry is None:
        return "nobody any more"
    try:
        value = jsonlib.loads(entry["value"])
        return f"{value['holder']} since {value['since']} ({value.get('purpose') or 'no purpose given'})"
    except (ValueError, KeyError, TypeError):
        return repr(entry["value"])


# --------------------------------------------------------------------------------------------------------------------
# The client (plain Python, no Salt dunders)
# --------------------------------------------------------------------------------------------------------------------
class _EndpointError(Exception):
    """One endpoint failed before etcd processed the request; the next one may be tried."""


class EtcdClient(http.Client):
    """
    A connection to one etcd cluster through its v3 JSON gateway. ``endpoints`` are tried in order. Use as a
    context manager (``with EtcdClient(...) as client``) so the HTTP session is closed.
    """

    server_name = "etcd"

    def __init__(self, endpoints, ca, cert=None, key=None, timeout=DEFAULT_TIMEOUT):
        self.endpoints = _as_list(endpoints)
        if not self.endpoints:
            raise SaltInvocationError("no etcd endpoints given; pass endpoints=[https://HOST:2379, ...]")
        for endpoint in self.endpoints:
            if not endpoint.startswith("https://") or len(endpoint) <= len("https://"):
                raise SaltInvocationError(
                    f"etcd endpoint {endpoint!r} must be an https:// URL (e.g. https://10.240.0.11:2379); "
                    "kubesalt's etcd accepts TLS clients only"
                )
        try:
            self.timeout = float(timeout if timeout is not None else DEFAULT_TIMEOUT)
        except (TypeError, ValueError) as exc:
            raise SaltInvocationError(f"etcd timeout {timeout!r} is not a number of seconds") from exc
        if self.timeout <= 0:
            raise SaltInvocationError(f"etcd timeout {timeout!r} must be a positive number of seconds")
        super().__init__(ca, cert, key)

    # -- transport ---------------------------------------------------------------------------------------------------
    def _call(self, endpoint, method, path, body=None, write=False):
        """One request to one endpoint. Raises _EndpointError when the next endpoint may be tried."""
        url = endpoint + path
        try:
            answer = self.session.request(method, url, json=body, timeout=(self.timeout, self.timeout))
        except requests.exceptions.Timeout as exc:
            if write:
                raise CommandExecutionError(
                    f"etcd at {endpoint} did not answer {path} within {self.timeout:g}s; the write may or may not "
                    "have been applied (does the cluster have quorum?)"
                ) from exc
            raise _EndpointError(self.failure(exc, self.timeout)) from exc
        except requests.exceptions.RequestException as exc:
            raise _EndpointError(self.failure(exc, self.timeout)) from exc
        return answer

    def _decode(self, endpoint, path, answer, write=False):
        try:
            data = answer.json()
        except ValueError:
            data = None
        if answer.status_code == 200 and isinstance(data, dict):
            return data
        message = (data or {}).get("message") or (data or {}).get("error")
        if answer.status_code == 404 and not message:
            message = f"{path} not found; this etcd does not serve the v3 JSON gateway at {API} (etcd >= 3.4 needed)"
        message = message or answer.text[:200]
        text = f"etcd at {endpoint} refused {path}: {message} (HTTP {answer.status_code})"
        if answer.status_code >= 500 and not write:
            raise _EndpointError(text)
        raise CommandExecutionError(text)

    def request(self, path, body=None, write=False):
        """POST ``body`` to ``path`` on the first endpoint that answers; return the decoded JSON answer."""
        failures = []
        for endpoint in self.endpoints:
            try:
                answer = self._call(endpoint, "POST", path, body if body is not None else {}, write=write)
                return self._decode(endpoint, path, answer, write=write)
            except _EndpointError as exc:
                log.debug("etcd endpoint %s failed for %s: %s", endpoint, path, exc)
                failures.append(f"{endpoint}: {exc}")
        raise CommandExecutionError(
            f"no etcd endpoint could serve {path}; tried {len(failures)}:\n  - " + "\n  - ".join(failures)
        )

    # -- key/value ---------------------------------------------------------------------------------------------------
    def get(self, name):
        """The key's entry (``key``, ``value``, ``create_revision``, ``mod_revision``, ``version``) or None."""
        answer = self.request(f"{API}/kv/range", {"key": _b64(check_key(name))})
        kvs = answer.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def ls(self, prefix, keys_only=False):
        """Every entry whose key starts with ``prefix``, in key order."""
        check_key(prefix, "prefix")
        body = {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}
        if keys_only:
            body["keys_only"] = True
        return [_kv(raw) for raw in self.request(f"{API}/kv/range", body).get("kvs") or []]

    def put(self, name, value):
        answer = self.request(f"{API}/kv/put", {"key": _b64(check_key(name)), "value": _b64(value)}, write=True)
        return {"name": name, "revision": _revision(answer)}

    def cas(self, name, value, prev_value=None, prev_revision=None, create_only=False, lease=None):
        """
        Write ``value`` in one transaction only if every given condition holds: the stored value equals
        ``prev_value``, its mod_revision equals ``prev_revision``, and (``create_only``) the key does not exist.
        With ``lease`` (an id from :py:meth:`lease_grant`) the key is bound to that lease. Returns ``succeeded``,
        ``revision`` and, when it failed, ``current`` (the entry as it is, or None).
        """
        key = _b64(check_key(name))
        compare = []
        if create_only:
            compare.append({"target": "CREATE", "key": key, "create_revision": "0", "result": "EQUAL"})
        if prev_revision is not None:
            try:
                revision = int(prev_revision)
            except (TypeError, ValueError) as exc:
                raise SaltInvocationError(f"prev_revision {prev_revision!r} is not a revision number") from exc
            if revision < 0:
                raise SaltInvocationError(f"prev_revision {prev_revision!r} must be >= 0 (0: key must not exist)")
            compare.append({"target": "MOD", "key": key, "mod_revision": str(revision), "result": "EQUAL"})
        if prev_value is not None:
            compare.append({"target": "VALUE", "key": key, "value": _b64(prev_value), "result": "EQUAL"})
        if not compare:
            raise SaltInvocationError(
                f"compare-and-swap on {name} needs prev_value, prev_revision or create_only; use put to write "
                "unconditionally"
            )
        put = {"key": key, "value": _b64(value)}
        if lease is not None:
            put["lease"] = str(int(lease))
        body = {
            "compare": compare,
            "success": [{"request_put": put}],
            "failure": [{"request_range": {"key": key}}],
        }
        answer = self.request(f"{API}/kv/txn", body, write=True)
        result = {"succeeded": bool(answer.get("succeeded")), "revision": _revision(answer)}
        if not result["succeeded"]:
            responses = answer.get("responses") or [{}]
            kvs = (responses[0].get("response_range") or {}).get("kvs") or []
            result["current"] = _kv(kvs[0]) if kvs else None
        return result

    def delete(self, name, prefix=False):
        body = {"key": _b64(check_key(name, "prefix" if prefix else "key"))}
        if prefix:
            body["range_end"] = _b64(_prefix_end(name))
        answer = self.request(f"{API}/kv/deleterange", body, write=True)
        return {"deleted": int(answer.get("deleted", 0)), "revision": _revision(answer)}

    # -- leases and a lock --------------------------------------------------------------------------------------------
    def lease_grant(self, ttl):
        """A new lease of ``ttl`` seconds; returns its id."""
        answer = self.request(f"{API}/lease/grant", {"TTL": str(int(ttl))}, write=True)
        if answer.get("error"):
            raise CommandExecutionError(f"etcd refused a lease of {ttl} s: {answer['error']}")
        return int(answer["ID"])

    def lease_revoke(self, lease):
        """Revoke lease ``lease`` (its keys are deleted). A lease that has already ended is not an error."""
        try:
            self.request(f"{API}/lease/revoke", {"ID": str(int(lease))}, write=True)
        except CommandExecutionError as exc:
            if "lease not found" not in str(exc):
                raise
            return False
        return True

    def lock(self, name, holder, ttl, wait, purpose="", interval=2.0):
        """
        Hold key ``name`` alone: create it (only if it does not exist) bound to a new lease of ``ttl`` seconds, with
        ``{"holder", "since", "purpose"}`` as its value. While another holder has it, try again every ``interval``
        seconds for up to ``wait`` seconds, then raise naming that holder. Returns ``{"name", "lease", "holder",
        "waited"}``; pass the lease to :py:meth:`lease_revoke` (:py:func:`unlock`) to release it.
        """
        start = time.monotonic()
        deadline = start + max(float(wait), 0.0)
        value = jsonlib.dumps(
            {"holder": holder, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "purpose": purpose},
            sort_keys=True,
        )
        while True:
            current = self.get(name)
            if current is None:
                lease = self.lease_grant(ttl)
                answer = self.cas(name, value, create_only=True, lease=lease)
                if answer["succeeded"]:
                    log.info("etcd lock %s taken by %s (lease %x, ttl %s s)", name, holder, lease, ttl)
                    return {
                        "name": name,
                        "lease": lease,
                        "holder": holder,
                        "waited": round(time.monotonic() - start, 1),
                    }
                self.lease_revoke(lease)
                current = answer.get("current")
            if time.monotonic() + interval > deadline:
                raise CommandExecutionError(
                    f"etcd lock {name} is held by {_lock_holder(current)}; {holder} waited "
                    f"{time.monotonic() - start:.0f} s for it (the holder's lease ends at the latest {ttl} s after "
                    "it took the lock)"
                )
            time.sleep(interval)

    # -- cluster -----------------------------------------------------------------------------------------------------
    def member_list(self):
        answer = self.request(f"{API}/cluster/member/list")
        return [
            {
                "id": format(int(m.get("ID", 0)), "x"),
                "name": m.get("name", ""),
                "peer_urls": list(m.get("peerURLs") or []),
                "client_urls": list(m.get("clientURLs") or []),
                "is_learner": bool(m.get("isLearner")),
            }
            for m in answer.get("members") or []
        ]

    def health_of(self, endpoint):
        """``{"healthy": bool, "error": str}`` of one endpoint, from its ``/health``."""
        try:
            answer = self._call(endpoint, "GET", "/health")
        except _EndpointError as exc:
            return {"healthy": False, "error": str(exc)}
        try:
            data = answer.json()
        except ValueError:
            data = {}
        healthy = str(data.get("health")).lower() == "true"
        error = "" if healthy else (data.get("reason") or f"/health says {answer.text.strip()[:200]!r}")
        return {"healthy": healthy, "error": error}

    def status_of(self, endpoint):
        """``/v3/maintenance/status`` of one endpoint, or ``{"error": ...}``."""
        try:
            path = f"{API}/maintenance/status"
            data = self._decode(endpoint, path, self._call(endpoint, "POST", path, {}))
        except (_EndpointError, CommandExecutionError) as exc:
            return {"error": str(exc)}
        member = int((data.get("header") or {}).get("member_id", 0))
        leader = int(data.get("leader", 0))
        return {
            "version": data.get("version", ""),
            "member_id": format(member, "x"),
            "leader": format(leader, "x"),
            "is_leader": bool(member) and member == leader,
            "db_size": int(data.get("dbSize", data.get("db_size", 0))),
            "raft_term": int(data.get("raftTerm", data.get("raft_term", 0))),
            "raft_index": int(data.get("raftIndex", data.get("raft_index", 0))),
        }

    def cluster_health(self):
        """
        Every member's health, judged through its own client URLs (from the member list, which any reachable member
        serves even without quorum). ``quorum`` is True when more than half of the voting members are healthy; a
        learner (a member still catching up, see :py:meth:`member_add`) has no vote: it is listed under ``learners``
        and counts for neither side, so a join in progress never makes a healthy cluster look broken.
        """
        members = self.member_list()
        report = {"members": {}, "healthy": [], "unhealthy": [], "learners": []}
        for member in sorted(members, key=lambda m: m["name"] or m["id"]):
            name = member["name"] or member["id"]
            entry = {"id": member["id"], "endpoint": "", "healthy": False, "error": "", "learner": member["is_learner"]}
            if not member["client_urls"]:
                entry["error"] = "not started yet (no client URLs)"
            for url in member["client_urls"]:
                entry.update(self.health_of(url.rstrip("/")), endpoint=url)
                if entry["healthy"]:
                    break
            report["members"][name] = entry
            if member["is_learner"]:
                report["learners"].append(name)
            else:
                report["healthy" if entry["healthy"] else "unhealthy"].append(name)
        voters = len(report["healthy"]) + len(report["unhealthy"])
        report["quorum"] = voters > 0 and len(report["healthy"]) > voters // 2
        return report

    # -- membership --------------------------------------------------------------------------------------------------
    def member_add(self, peer_urls, learner=True):
        """Add a member with ``peer_urls``; with ``learner`` (the default) as a non-voting learner (etcd >= 3.4)."""
        body = {"peerURLs": list(peer_urls)}
        if learner:
            body["isLearner"] = True
        answer = self.request(f"{API}/cluster/member/add", body, write=True)
        added = answer.get("member") or {}
        return {
            "id": format(int(added.get("ID", 0)), "x"),
            "peer_urls": list(added.get("peerURLs") or []),
            "is_learner": bool(added.get("isLearner")),
        }

    def member_remove(self, member_id):
        self.request(f"{API}/cluster/member/remove", {"ID": str(int(member_id, 16))}, write=True)

    def member_promote(self, member_id):
        self.request(f"{API}/cluster/member/promote", {"ID": str(int(member_id, 16))}, write=True)

    def move_leader(self, leader, target_id):
        """Hand the leadership of ``leader`` (a member entry; the request must reach it) to member ``target_id``."""
        path = f"{API}/maintenance/transfer-leadership"
        for url in leader["client_urls"]:
            try:
                self._decode(
                    url, path, self._call(url.rstrip("/"), "POST", path, {"targetID": str(int(target_id, 16))})
                )
                return
            except _EndpointError as exc:
                failure = exc
        raise CommandExecutionError(f"etcd leader {leader['name'] or leader['id']} unreachable: {failure}")

    # -- snapshots ---------------------------------------------------------------------------------------------------
    def revision(self):
        """The cluster's current revision (a serializable read of one key is enough: every answer carries it)."""
        return _revision(self.request(f"{API}/kv/range", {"key": _b64("/"), "serializable": True, "limit": 1}))

    def snapshot(self, handle, endpoint=None):
        """
        Stream a snapshot of the backend of ``endpoint`` (default: the first endpoint) into the binary file
        ``handle``; return the bytes written. The stream is the database followed by its SHA-256, as etcd sends it.
        """
        endpoint = endpoint or self.endpoints[0]
        path = f"{API}/maintenance/snapshot"
        try:
            answer = self.session.post(endpoint + path, json={}, stream=True, timeout=(self.timeout, self.timeout))
        except requests.exceptions.RequestException as exc:
            raise CommandExecutionError(f"etcd at {endpoint}: {path}: {self.failure(exc, self.timeout)}") from exc
        written = 0
        with answer:
            if answer.status_code != 200:
                self._decode(endpoint, path, answer)
            try:
                for line in answer.iter_lines(chunk_size=1 << 16):
                    if not line:
                        continue
                    message = jsonlib.loads(line)
                    if "error" in message:
                        error = message["error"] or {}
                        raise CommandExecutionError(
                            f"etcd at {endpoint} broke off the snapshot: {error.get('message') or error}"
                        )
                    blob = base64.b64decode((message.get("result") or {}).get("blob") or "")
                    handle.write(blob)
                    written += len(blob)
            except (requests.exceptions.RequestException, ValueError) as exc:
                raise CommandExecutionError(
                    f"etcd at {endpoint}: the snapshot stream broke off after {written} bytes: {exc}"
                ) from exc
        return written


# --------------------------------------------------------------------------------------------------------------------
# Connection defaults and retries
# --------------------------------------------------------------------------------------------------------------------
def connection_defaults(config, identity=None):
    """The connection parameters of settings ``config`` for client ``identity`` (see
    ``k8s_etcd.connection_defaults``)."""
    cluster = config["cluster"]
    if identity is None:
        identity = CLIENT_IDENTITIES[0 if cluster["is_master"] else 1]
    files = pki.layout(config)
    return {
        "endpoints": list(cluster["etcd_client_urls"]),
        "ca": files["cas"]["etcd-ca"]["bundle"],
        "cert": files["certificates"][identity]["cert"],
        "key": files["certificates"][identity]["key"],
        "timeout": DEFAULT_TIMEOUT,
    }


# etcd refuses a membership change until the member asked has been connected to every voting member for 5 s
# ("unhealthy cluster", ErrUnhealthy), and a promotion until the learner has caught up ("... in sync with leader").
TRANSIENT_MEMBERSHIP = ("unhealthy cluster", "in sync")


def retrying(call, wait, failure):
    """``call()``, tried again every 2 s for up to ``wait`` seconds while etcd answers with a transient refusal."""
    deadline = time.monotonic() + float(wait)
    while True:
        try:
            return call()
        except CommandExecutionError as exc:
            if not any(m in str(exc) for m in TRANSIENT_MEMBERSHIP) or time.monotonic() + 2 > deadline:
                raise CommandExecutionError(f"{failure}: {exc}") from exc
        time.sleep(2)
