"""
kubesalt etcd client: keys, compare-and-swap, membership and health of a TLS etcd cluster. (The etcd member itself --
flags, unit -- is built by ``k8s_conf.etcd`` like every other component.)

How it talks to etcd
--------------------
Through etcd's own JSON gateway for the v3 API (grpc-gateway, built into every etcd >= 3.4 and always on), over HTTPS
with a client certificate, using ``requests``:

* ``POST <endpoint>/v3/kv/range|put|deleterange|txn``, ``/v3/cluster/member/list``, ``/v3/maintenance/status``,
  ``/v3/lease/grant|revoke`` and ``GET <endpoint>/health``. Keys and values travel base64-encoded, 64-bit integers
  as JSON strings, and fields equal to their zero value are left out (``"succeeded": false`` is simply absent),
  exactly as the gateway does it.
* ``/v3`` is the one prefix served by 3.4, 3.5 and 3.6 (3.4 also answers the deprecated ``/v3beta``; 3.5 dropped it).

Why not a client library: ``python-etcd3`` has had no release since 2020 and pins protobuf/grpcio versions that
conflict with current ones; ``python-etcd`` speaks the v2 API that etcd 3.6 no longer has. The gateway needs nothing
beyond ``requests``, which Salt itself already depends on, and ``requests``' ``cert=(cert, key)`` / ``verify=ca``
give mutual TLS without extra code.

Connection parameters
---------------------
Every function that talks to etcd takes the same keyword arguments:

``endpoints``
    list of ``https://host:port`` URLs (or one comma-separated string); tried in order until one answers.
``ca``
    CA bundle that verifies etcd's server certificate (``verify=``).
``cert``, ``key``
    the client certificate and its private key. etcd runs with ``--client-cert-auth`` and refuses clients without.
``timeout``
    seconds for connecting and for each answer (default 5).

Because ``key`` is the client key file, the etcd key an operation works on is the argument ``name`` (as in states).

On a minion with the kubesalt settings module, anything not given is taken from ``k8s.config``
(:py:func:`connection_defaults`): the client URLs of every etcd member, the etcd CA bundle and a client certificate
from the etcd CA in ``k8s:paths:pki_dir``, named as ``k8s_pki.layout`` names them (``apiserver-etcd-client`` on a
master, else ``etcd-healthcheck-client``). The core (:py:class:`EtcdClient` and the pure functions) takes plain
values and never reads Salt's dunders.

Retries and writes
------------------
An endpoint that cannot be connected to (refused, TLS failure, connect timeout) is skipped and the next one is tried;
the error names every endpoint tried and why each failed. A read that times out moves on as well. A *write* whose
answer times out, or that etcd answers with an error, is not retried: its outcome is unknown or final, and the error
says so. Writes are single requests (one put, one txn, one deleterange), so nothing is ever half-written.

A lock
------
:py:func:`lock` / :py:func:`unlock`: one holder at a time for a key, held through a lease (``ttl`` seconds). The key
is created only if it does not exist (a compare-and-swap on its create revision) and is bound to the lease, so it
disappears when the holder revokes the lease (:py:func:`unlock`) or when the holder is gone for ``ttl`` seconds --
etcd's clock decides, not the nodes'. kubesalt's certificate renewal uses it so that masters and etcd members restart
their services one at a time.
"""

import base64
import contextlib
import datetime
import json as jsonlib
import logging
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import time

import requests  # a dependency of Salt itself
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import data, files, http, pki, snapshot, topology

log = logging.getLogger(__name__)

__virtualname__ = "k8s_etcd"

API = "/v3"
DEFAULT_TIMEOUT = 5
CONN_KEYS = ("endpoints", "ca", "cert", "key", "timeout")

# The client identity (k8s_pki) this module uses by default: masters hold the first, etcd members the second.
CLIENT_IDENTITIES = ("apiserver-etcd-client", "etcd-healthcheck-client")


def __virtual__():
    return __virtualname__


# --------------------------------------------------------------------------------------------------------------------
# Values and keys (pure)
# --------------------------------------------------------------------------------------------------------------------
def _b64(text):
    data = text if isinstance(text, bytes) else str(text).encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def _unb64(data):
    return base64.b64decode(data or "").decode("utf-8", errors="backslashreplace")


def _check_key(name, what="key"):
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
    """
    The exact string stored for ``value``. With ``json=True``, ``value`` is a mapping/list/number or a JSON text and
    is stored as canonical JSON (sorted keys, no whitespace), so equal data always gives equal bytes; text that is not
    valid JSON is refused. Without, ``value`` must be a string (numbers are converted).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.render_value '{"b": 1, "a": [1, 2]}' json=True
    """
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
    """
    Whether two stored values are the same. With ``json=True`` they are compared as data, so key order and whitespace
    do not count; a value that is not valid JSON is compared as text.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.same_value '{"a":1,"b":2}' '{"b": 2, "a": 1}' json=True
    """
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
        answer = self.request(f"{API}/kv/range", {"key": _b64(_check_key(name))})
        kvs = answer.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def ls(self, prefix, keys_only=False):
        """Every entry whose key starts with ``prefix``, in key order."""
        _check_key(prefix, "prefix")
        body = {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}
        if keys_only:
            body["keys_only"] = True
        return [_kv(raw) for raw in self.request(f"{API}/kv/range", body).get("kvs") or []]

    def put(self, name, value):
        answer = self.request(f"{API}/kv/put", {"key": _b64(_check_key(name)), "value": _b64(value)}, write=True)
        return {"name": name, "revision": _revision(answer)}

    def cas(self, name, value, prev_value=None, prev_revision=None, create_only=False, lease=None):
        """
        Write ``value`` in one transaction only if every given condition holds: the stored value equals
        ``prev_value``, its mod_revision equals ``prev_revision``, and (``create_only``) the key does not exist.
        With ``lease`` (an id from :py:meth:`lease_grant`) the key is bound to that lease. Returns ``succeeded``,
        ``revision`` and, when it failed, ``current`` (the entry as it is, or None).
        """
        key = _b64(_check_key(name))
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
        body = {"key": _b64(_check_key(name, "prefix" if prefix else "key"))}
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
# Rendered data for the formula (pure)
# --------------------------------------------------------------------------------------------------------------------
def connection_defaults(config, identity=None):
    """
    The connection parameters a minion uses when none are given: the client URL of every etcd member, the etcd CA
    bundle, and the certificate and key of client ``identity`` (default: ``apiserver-etcd-client`` on a master,
    ``etcd-healthcheck-client`` elsewhere), all in ``k8s:paths:pki_dir`` where the PKI states put them.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.connection_defaults "$(salt-call --out=json k8s.config | jq .local)"
    """
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


# --------------------------------------------------------------------------------------------------------------------
# Salt glue: connection defaults from k8s.config, then thin wrappers over EtcdClient
# --------------------------------------------------------------------------------------------------------------------
def _client(endpoints=None, ca=None, cert=None, key=None, timeout=None):
    given = {"endpoints": endpoints, "ca": ca, "cert": cert, "key": key}
    missing = [name for name, value in given.items() if value is None]
    if missing and "k8s.config" in __salt__:
        try:
            defaults = connection_defaults(__salt__["k8s.config"]())
        except CommandExecutionError as exc:
            raise CommandExecutionError(
                f"etcd connection argument(s) {', '.join(missing)} not given, and k8s.config could not supply them: "
                f"{exc}"
            ) from exc
        given.update({name: defaults[name] for name in missing})
    return EtcdClient(timeout=timeout, **given)


def get(name, json=False, meta=False, endpoints=None, ca=None, cert=None, key=None, timeout=None):
    """
    The value of etcd key ``name``, or None when it does not exist. With ``json=True`` the value is parsed (an error
    if it is not JSON); with ``meta=True`` the whole entry is returned: ``key``, ``value``, ``create_revision``,
    ``mod_revision``, ``version``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.get /coreos.com/network/config json=True
        salt-call k8s_etcd.get /coreos.com/network/config meta=True endpoints=https://10.240.0.11:2379 \\
            ca=/etc/kubernetes/pki/etcd-ca.crt cert=/etc/kubernetes/pki/apiserver-etcd-client.crt \\
            key=/etc/kubernetes/pki/apiserver-etcd-client.key
    """
    _check_key(name)
    with _client(endpoints, ca, cert, key, timeout) as client:
        entry = client.get(name)
    if entry is None:
        return None
    if json:
        try:
            entry["value"] = jsonlib.loads(entry["value"])
        except ValueError as exc:
            raise CommandExecutionError(
                f"etcd key {name} does not hold valid JSON ({exc}): {entry['value']!r}"
            ) from exc
    return entry if meta else entry["value"]


def ls(prefix, keys_only=False, json=False, endpoints=None, ca=None, cert=None, key=None, timeout=None):
    """
    Every key under ``prefix`` (which must start with '/'), as ``{key: value}`` in key order, or a list of keys with
    ``keys_only=True``. With ``json=True`` every value is parsed.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.ls /coreos.com/network/
        salt-call k8s_etcd.ls /coreos.com/network/subnets keys_only=True
    """
    _check_key(prefix, "prefix")
    with _client(endpoints, ca, cert, key, timeout) as client:
        entries = client.ls(prefix, keys_only=keys_only)
    if keys_only:
        return [e["key"] for e in entries]
    result = {}
    for entry in entries:
        value = entry["value"]
        if json:
            try:
                value = jsonlib.loads(value)
            except ValueError as exc:
                raise CommandExecutionError(f"etcd key {entry['key']} does not hold valid JSON ({exc})") from exc
        result[entry["key"]] = value
    return result


def put(name, value, json=False, endpoints=None, ca=None, cert=None, key=None, timeout=None):
    """
    Write ``value`` to key ``name`` unconditionally. With ``json=True`` the value is stored as canonical JSON and
    text that is not valid JSON is refused before anything is written. Returns the new cluster revision.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.put /kubesalt/hello world
        salt-call k8s_etcd.put /kubesalt/data '{"a": 1}' json=True
    """
    _check_key(name)
    text = render_value(value, json=json, name=name)
    with _client(endpoints, ca, cert, key, timeout) as client:
        return client.put(name, text)


def cas(
    name,
    value,
    prev_value=None,
    prev_revision=None,
    create_only=False,
    json=False,
    endpoints=None,
    ca=None,
    cert=None,
    key=None,
    timeout=None,
):
    """
    Compare-and-swap: write ``value`` to ``name`` in one etcd transaction only if the key still holds
    ``prev_value`` (byte for byte), still has mod_revision ``prev_revision`` (0: does not exist), and, with
    ``create_only=True``, does not exist (create_revision 0). Returns ``{"succeeded": bool, "revision": int}`` and,
    on failure, ``current``: the entry as it is now (None if absent), read in the same transaction.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.cas /kubesalt/leader minion2 prev_value=minion1
        salt-call k8s_etcd.cas /kubesalt/counter 8 prev_revision=41
        salt-call k8s_etcd.cas /kubesalt/owner minion1 create_only=True
    """
    _check_key(name)
    text = render_value(value, json=json, name=name)
    with _client(endpoints, ca, cert, key, timeout) as client:
        return client.cas(name, text, prev_value=prev_value, prev_revision=prev_revision, create_only=create_only)


def delete(name, prefix=False, endpoints=None, ca=None, cert=None, key=None, timeout=None):
    """
    Delete key ``name`` (or, with ``prefix=True``, every key starting with ``name``). Returns the number deleted.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.delete /kubesalt/hello
        salt-call k8s_etcd.delete /kubesalt/tmp/ prefix=True
    """
    _check_key(name, "prefix" if prefix else "key")
    with _client(endpoints, ca, cert, key, timeout) as client:
        return client.delete(name, prefix=prefix)["deleted"]


def member_list(endpoints=None, ca=None, cert=None, key=None, timeout=None):
    """
    The cluster's members: ``id`` (hex, as etcdctl shows it), ``name``, ``peer_urls``, ``client_urls``,
    ``is_learner``. A member that has not started yet has no client URLs, and no name either when it was
    added to a running cluster (the members of a first bootstrap carry their names from the start).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.member_list
    """
    with _client(endpoints, ca, cert, key, timeout) as client:
        return client.member_list()


def _each_endpoint(method, endpoints, ca, cert, key, timeout):
    """``{endpoint: answer}``: ``EtcdClient.<method>`` asked of every endpoint on its own."""
    with _client(endpoints, ca, cert, key, timeout) as client:
        return {endpoint: getattr(client, method)(endpoint) for endpoint in client.endpoints}


def endpoint_health(endpoints=None, ca=None, cert=None, key=None, timeout=None):
    """
    ``/health`` of every endpoint: ``{endpoint: {"healthy": bool, "error": str}}``. An endpoint is healthy when its
    member has a leader and can serve a quorum read.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.endpoint_health
    """
    return _each_endpoint("health_of", endpoints, ca, cert, key, timeout)


def endpoint_status(endpoints=None, ca=None, cert=None, key=None, timeout=None):
    """
    ``/v3/maintenance/status`` of every endpoint: version, member_id, leader, is_leader, db_size, raft_term,
    raft_index; or ``{"error": ...}`` for an endpoint that does not answer.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.endpoint_status
    """
    return _each_endpoint("status_of", endpoints, ca, cert, key, timeout)


def cluster_health(endpoints=None, ca=None, cert=None, key=None, timeout=None):
    """
    The health of every member (probed at its own client URLs): ``{"members": {name: {"healthy", "endpoint",
    "error", "id"}}, "healthy": [names], "unhealthy": [names], "quorum": bool}``. Raises CommandExecutionError,
    naming every endpoint tried, when no endpoint can list the members.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.cluster_health
    """
    with _client(endpoints, ca, cert, key, timeout) as client:
        return client.cluster_health()


def lock(name, holder=None, ttl=900, wait=900, purpose="", endpoints=None, ca=None, cert=None, key=None, timeout=None):
    """
    Take the lock ``name`` (an etcd key, e.g. ``/kubesalt/locks/certificate-renewal``) for ``holder`` (default: this
    minion's id): the key is created only if it does not exist, bound to a lease of ``ttl`` seconds, so it goes away
    when :py:func:`unlock` revokes the lease or ``ttl`` seconds after the holder is gone. While another holder has
    it, wait up to ``wait`` seconds (0: do not wait), then raise naming that holder and since when. Returns
    ``{"name", "lease", "holder", "waited"}``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.lock /kubesalt/locks/maintenance ttl=600 wait=60 purpose="kernel update"
    """
    _check_key(name)
    for what, value in (("ttl", ttl), ("wait", wait)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (what == "ttl" and value < 1):
            raise SaltInvocationError(f"etcd lock {name}: {what} {value!r} is not a number of seconds (ttl >= 1)")
    holder = str(holder or __opts__["id"])
    with _client(endpoints, ca, cert, key, timeout) as client:
        return client.lock(name, holder, ttl, wait, purpose=purpose)


def unlock(lease, endpoints=None, ca=None, cert=None, key=None, timeout=None):
    """
    Release a lock taken with :py:func:`lock`: revoke its lease, which deletes the lock key. Returns True, or False
    when the lease had already ended (its ttl passed).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.unlock 7587869872437329924
    """
    with _client(endpoints, ca, cert, key, timeout) as client:
        return client.lease_revoke(lease)


# --------------------------------------------------------------------------------------------------------------------
# Membership
# --------------------------------------------------------------------------------------------------------------------
def find_member(members, name):
    """
    The member of ``members`` (a :py:func:`member_list` answer) called ``name`` -- its name, hex id or one of its
    peer URLs -- or None.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.find_member "$(salt-call --out=json k8s_etcd.member_list | jq -c .local)" master03
    """
    for member in members:
        if name in (member["name"], member["id"]) or name in member["peer_urls"]:
            return member
    return None


def removal_problem(report, name):
    """
    Why removing member ``name`` would cost the cluster its quorum, or None when it is safe. ``report`` is a
    :py:func:`cluster_health` answer. A learner has no vote and can always go; a voting member only when, among the
    voting members that remain, more than half are healthy -- and never the last one.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.removal_problem "$(salt-call --out=json k8s_etcd.cluster_health | jq -c .local)" master03
    """
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


def member_add(
    peer_url, learner=True, wait=30, promote_first=(), endpoints=None, ca=None, cert=None, key=None, timeout=None
):
    """
    Add a member whose peer URL is ``peer_url`` to the running cluster, as a learner by default: a learner receives
    the data but has no vote, so a join never changes the quorum; :py:func:`member_promote` makes it a voting member
    once it has caught up. etcd accepts one learner at a time. A member with that peer URL already there is
    returned as it is (``added: False``). The new member must then start with ``--initial-cluster-state existing``
    (``k8s.etcd`` does this by itself, see :py:func:`initial_cluster`). A transient refusal of etcd right after
    another membership change is tried again every 2 s for up to ``wait`` seconds. The learners named in
    ``promote_first`` (left by an interrupted join, see :py:func:`decide_initial_cluster`) are promoted first, each
    tried for up to ``wait`` seconds.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.member_add https://10.240.0.13:2380
    """
    with _client(endpoints, ca, cert, key, timeout) as client:
        members = client.member_list()
        existing = find_member(members, peer_url)
        if existing:
            return dict(existing, added=False)
        for name in promote_first:
            learner_id = (find_member(members, name) or {}).get("id")
            if learner_id:
                _retrying(lambda i=learner_id: client.member_promote(i), wait, f"etcd learner {name} not promoted")
        added = _retrying(
            lambda: client.member_add([peer_url], learner=learner), wait, f"etcd member {peer_url} not added"
        )
    return dict(added, name="", client_urls=[], added=True)


# etcd refuses a membership change until the member asked has been connected to every voting member for 5 s
# ("unhealthy cluster", ErrUnhealthy), and a promotion until the learner has caught up ("... in sync with leader").
_TRANSIENT_MEMBERSHIP = ("unhealthy cluster", "in sync")


def _retrying(call, wait, failure):
    """``call()``, tried again every 2 s for up to ``wait`` seconds while etcd answers with a transient refusal."""
    deadline = time.monotonic() + float(wait)
    while True:
        try:
            return call()
        except CommandExecutionError as exc:
            if not any(m in str(exc) for m in _TRANSIENT_MEMBERSHIP) or time.monotonic() + 2 > deadline:
                raise CommandExecutionError(f"{failure}: {exc}") from exc
        time.sleep(2)


def member_remove(name, wait=30, endpoints=None, ca=None, cert=None, key=None, timeout=None):
    """
    Remove member ``name`` (its name, hex id or peer URL) from the cluster, unless that would lose quorum (see
    :py:func:`removal_problem`; refused with the reason). Returns ``{"removed": bool, "member": ...}``; a member
    that is not there is not an error (``removed: False``). Stop the removed member's etcd afterwards and move its
    data directory aside: it must never start again with that data. A transient refusal of etcd right after another
    membership change is tried again for up to ``wait`` seconds. A member that leads hands the leadership to a
    healthy voting member first (``leadership_moved_to``), so its removal costs no election.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.member_remove master03
    """
    with _client(endpoints, ca, cert, key, timeout) as client:
        member = find_member(client.member_list(), name)
        if member is None:
            return {"removed": False, "member": None}
        health = client.cluster_health()
        problem = removal_problem(health, member["name"] or member["id"])
        if problem:
            raise CommandExecutionError(f"etcd member {name} not removed: {problem}")
        moved_to = _lead_elsewhere(client, member, health)
        _retrying(lambda: client.member_remove(member["id"]), wait, f"etcd member {name} not removed")
    return {"removed": True, "member": member, "leadership_moved_to": moved_to}


def _lead_elsewhere(client, member, health):
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


def members_to_remove(config=None, members=None):
    """
    The members of the running cluster that ``k8s:nodes`` does not list as etcd members (matched by peer URL, so a
    renamed or never-started member is found too), as :py:func:`member_list` gives them, each with ``label`` (its
    name, or its id when it has none).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.members_to_remove
    """
    config = config or __salt__["k8s.config"]()
    wanted = set(topology.etcd_peer_urls(config).values())
    if members is None:
        members = member_list()
    return [dict(m, label=m["name"] or m["id"]) for m in members if not wanted.intersection(m["peer_urls"])]


def not_voting(config=None, members=None, peers=None):
    """
    The etcd members of ``k8s:nodes`` (or ``peers``, ``{name: peer URL}``) that are not started voting members of
    the running cluster: ``{name: reason}`` (missing, added but not started, a learner not promoted yet); empty when
    every one votes.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.not_voting
    """
    if peers is None:
        peers = topology.etcd_peer_urls(config or __salt__["k8s.config"]())
    if members is None:
        members = member_list()
    problems = {}
    for name, peer_url in peers.items():
        member = find_member(members, peer_url)
        if member is None:
            problems[name] = "not a member of the cluster"
        elif not _started(member):
            problems[name] = "added but not started"
        elif member["is_learner"]:
            problems[name] = "a learner, not promoted yet"
    return problems


def restore_seed(config, seed=None):
    """
    The member a restore starts from (``k8s.etcd.restore``): ``seed`` when given (it must be an etcd member of
    ``k8s:nodes``), else the CA minion when it is an etcd member, else the first etcd member.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.restore_seed "$(salt-call --out=json k8s.config | jq -c .local)" master02
    """
    cluster = config["cluster"]
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


def resolve_snapshot(snapshot_path, directory=None):
    """
    The snapshot file a restore uses: ``snapshot_path`` itself, or for ``latest`` the newest snapshot in
    ``directory`` (default ``k8s:etcd:backup:dir``). Raises when there is none.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.resolve_snapshot latest
    """
    if snapshot_path == "latest":
        found = snapshots(directory)
        if not found:
            raise CommandExecutionError(
                f"k8s_op:snapshot: 'latest', but {directory or 'k8s:etcd:backup:dir'} holds no snapshot"
            )
        return found[0]["path"]
    if not os.path.isfile(str(snapshot_path)):
        raise CommandExecutionError(f"k8s_op:snapshot: {snapshot_path} is not a file on this member")
    return str(snapshot_path)


def member_promote(name, wait=60, endpoints=None, ca=None, cert=None, key=None, timeout=None):
    """
    Make learner ``name`` a voting member. etcd refuses while the learner has not caught up with the leader (or
    right after another membership change); the promotion is tried again every 2 s for up to ``wait`` seconds. A
    member that already votes is left as it is (``promoted: False``).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.member_promote master03 wait=120
    """
    with _client(endpoints, ca, cert, key, timeout) as client:
        member = find_member(client.member_list(), name)
        if member is None:
            raise CommandExecutionError(f"etcd member {name} is not in the cluster; nothing to promote")
        if not member["is_learner"]:
            return {"promoted": False, "member": member}
        _retrying(lambda: client.member_promote(member["id"]), wait, f"etcd learner {name} not promoted")
    return {"promoted": True, "member": dict(member, is_learner=False)}


# --------------------------------------------------------------------------------------------------------------------
# A member's first start: --initial-cluster-state new or existing
# --------------------------------------------------------------------------------------------------------------------
def holds_member(data_dir):
    """
    Whether ``data_dir`` holds an initialised etcd member (a write-ahead log in ``member/wal``). etcd reads its
    ``--initial-cluster*`` settings only when it does not.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.holds_member /var/lib/etcd
    """
    wal = os.path.join(str(data_dir), "member", "wal")
    try:
        return any(name.endswith(".wal") for name in os.listdir(wal))
    except OSError:
        return False


def decide_initial_cluster(name, peer_url, inventory, members=None, health=None, restoring=False):
    """
    How member ``name`` (peer URL ``peer_url``) with an empty data directory starts -- the one place this is decided.
    ``inventory`` is ``{member: peer URL}`` of every etcd member in ``k8s:nodes``; ``members`` and ``health`` are what
    the other members answered (:py:func:`member_list`, :py:func:`cluster_health`), None when none answered.

    - nobody answers: ``new``, the inventory as the initial cluster (the first bootstrap). Refused after a restore
      (``restoring``): such a member must join the restored cluster, never found a second one;
    - the cluster answers without quorum and lists this member as not started: ``new`` (a bootstrap in progress);
      any other case without quorum is refused (no member can join then);
    - the cluster has quorum: ``existing``, the initial cluster being the members as the cluster has them plus this
      one (etcd checks that they match). Refused when this member is registered *and started* (its data was lost:
      replace it) or when another member was added but has not started (etcd joins one member at a time).

    A learner left started but unpromoted by an interrupted join is named in ``promote_first``: etcd takes one
    learner at a time, so it is promoted before this member is added.

    Returns ``{"state", "initial_cluster": {name: peer URL}, "join": bool (the member must be added first),
    "promote_first": [learner names]}``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.decide_initial_cluster master03 https://10.240.0.13:2380 \\
            '{master01: "https://10.240.0.11:2380", master03: "https://10.240.0.13:2380"}'
    """
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
        if me is not None and not _started(me) and not restoring:
            return {"state": "new", "initial_cluster": inventory, "join": False, "promote_first": []}
        raise CommandExecutionError(
            f"etcd answers but has no quorum ({_health_summary(health)}): member {name} cannot join now"
        )
    if me is not None and _started(me):
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


def _started(member):
    """Whether ``member`` (a :py:func:`member_list` entry) has ever started: a started member publishes its client
    URLs. Its name says nothing: the members of a first bootstrap are listed by name before they start."""
    return bool(member["client_urls"])


def _health_summary(health):
    if not health:
        return "no report"
    return f"healthy: {', '.join(health['healthy']) or 'none'}; unhealthy: {', '.join(health['unhealthy']) or 'none'}"


def initial_cluster(config=None, timeout=3, ask=True):
    """
    This member's first-start settings (see :py:func:`decide_initial_cluster`), or None when its data directory
    already holds a member (etcd then ignores them, and ``k8s.etcd`` leaves them as they are). The other members are
    asked at their client URLs from ``k8s:nodes``, ``timeout`` seconds each; with ``ask=False`` (a files-only run,
    ``k8s:manage_services: false``) nobody is asked, which is the first bootstrap's answer.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.initial_cluster
    """
    config = config or __salt__["k8s.config"]()
    cluster, me = config["cluster"], config["cluster"]["minion_id"]
    if me not in cluster["etcd_members"]:
        raise SaltInvocationError(f"k8s:nodes:{me}:roles: {me} is not an etcd member")
    if holds_member(config["paths"]["etcd_data_dir"]):
        return None
    peers = topology.etcd_peer_urls(config)
    others = cluster["etcd_other_client_urls"] if ask else []
    members = health = None
    if others:
        conn = connection_defaults(config, identity="etcd-healthcheck-client")
        conn.update(endpoints=others, timeout=timeout)
        try:
            with EtcdClient(**conn) as client:
                members, health = client.member_list(), client.cluster_health()
        except CommandExecutionError as exc:
            log.info("no other etcd member answered (%s); this is a first bootstrap", exc)
    restoring = os.path.exists(cluster["etcd_restore_marker"])
    return decide_initial_cluster(me, peers[me], peers, members, health, restoring=restoring)


def first_start_env(decision):
    """
    The environment file (``k8s_conf.etcd_first_start_file``) that carries a first-start ``decision``
    (:py:func:`decide_initial_cluster`) to etcd: ``ETCD_INITIAL_CLUSTER`` and ``ETCD_INITIAL_CLUSTER_STATE``. Names
    must be node names and URLs https URLs: nothing else reaches the file.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.first_start_env '{state: new, initial_cluster: {m1: "https://10.240.0.11:2380"}}'
    """
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


# --------------------------------------------------------------------------------------------------------------------
# Snapshots
# --------------------------------------------------------------------------------------------------------------------
SNAPSHOT_PATTERN = re.compile(r"etcd-snapshot-\d{8}T\d{6}\.\d{6}Z\.db")


def _private_dir(path, what):
    """Create ``path`` 0700 (root's), or make an existing one 0700; refuse a symlink or a non-directory."""
    path = str(path)
    if not os.path.isabs(path):
        raise SaltInvocationError(f"{what} {path!r} must be an absolute path")
    if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
        raise CommandExecutionError(f"{what} {path} is a symlink or not a directory; refused")
    files.make_dirs(os.path.join(path, "x"), 0o700)
    os.chmod(path, 0o700)
    return path


def snapshots(directory=None):
    """
    The snapshots kubesalt took in ``directory`` (default ``k8s:etcd:backup:dir``), newest first: ``path``,
    ``size``, ``mtime`` (Unix time).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.snapshots
    """
    directory = directory or _backup_settings()["dir"]
    try:
        names = sorted((n for n in os.listdir(directory) if SNAPSHOT_PATTERN.fullmatch(n)), reverse=True)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        path = os.path.join(directory, name)
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode):
            found.append({"path": path, "size": info.st_size, "mtime": info.st_mtime})
    return found


def verify_snapshot(path, min_revision=0):
    """
    Check snapshot ``path`` without etcd (``kubesalt.snapshot``): its SHA-256 trailer, the bbolt database, etcd's
    key bucket read to the end; its revision (the newest key revision or the last compaction) at least
    ``min_revision``; every Kubernetes Secret in it encrypted
    (the API server's ``k8s:enc:`` envelope). Returns ``size``, ``sha256``, ``revision``, ``revisions``,
    ``secrets``; raises naming what is wrong.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.verify_snapshot /var/backups/etcd/etcd-snapshot-20261201T120000.000000Z.db
    """
    try:
        facts = snapshot.inspect(str(path))
    except (snapshot.SnapshotError, OSError, struct.error) as exc:
        raise CommandExecutionError(f"etcd snapshot {path} is not usable: {exc}") from exc
    reached = max(facts["revision"], facts["compact_revision"])
    # revision 1 is an empty cluster's: no key revision stands for it
    if int(min_revision or 0) > 1 and reached < int(min_revision):
        raise CommandExecutionError(
            f"etcd snapshot {path} is at revision {reached}, older than the cluster's {min_revision} when the snapshot "
            "began"
        )
    clear = facts.pop("cleartext_secrets")
    if clear:
        shown = ", ".join(clear[:5]) + (f" and {len(clear) - 5} more" if len(clear) > 5 else "")
        raise CommandExecutionError(
            f"etcd snapshot {path} holds {len(clear)} Secret(s) in cleartext ({shown}): Secrets must be encrypted at "
            "rest (EncryptionConfiguration); rewrite them (kubectl get secrets -A -o json | kubectl replace -f -) "
            "and let the API server compact etcd's history (every 5 minutes), then take the snapshot again"
        )
    return facts


def prune_snapshots(directory, keep):
    """
    Remove all but the newest ``keep`` snapshots (kubesalt's names only) from ``directory``; return what was removed.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.prune_snapshots /var/backups/etcd 7
    """
    keep = int(keep)
    if keep < 1:
        raise SaltInvocationError(f"keep {keep!r} must be at least 1 (k8s:etcd:backup:keep)")
    removed = []
    for entry in snapshots(directory)[keep:]:
        os.unlink(entry["path"])
        removed.append(entry["path"])
    return removed


def _copy_private(source, directory):
    target = os.path.join(_private_dir(directory, "k8s:etcd:backup:copy_to"), os.path.basename(source))
    with open(source, "rb") as src, files.atomic(target, 0o600) as dst:
        shutil.copyfileobj(src, dst, files.CHUNK)
    return target


def _backup_settings(config=None):
    if config is None and "k8s.config" in __salt__:
        config = __salt__["k8s.config"]()
    settings = ((config or {}).get("etcd") or {}).get("backup")
    if not settings:
        raise SaltInvocationError("no backup settings: pass directory= and keep= (or run where k8s.config works)")
    return settings


def backup(directory=None, keep=None, copy_to=None, endpoints=None, ca=None, cert=None, key=None, timeout=None):
    """
    Take a snapshot of one etcd member, keep it only if it is sound, and keep the newest ``keep``.

    The snapshot is streamed from ``/v3/maintenance/snapshot`` of the first endpoint (default on an etcd member: its
    own, ``https://127.0.0.1:<client_port>``) into a 0600 temporary file in ``directory`` (0700), checked with
    :py:func:`verify_snapshot` against the revision the cluster had when it began, and only then renamed to
    ``etcd-snapshot-<UTC time>.db``; a broken stream or a failed check leaves nothing behind. Then all but the newest
    ``keep`` snapshots are removed, and with ``copy_to`` (an absolute path, e.g. a mounted backup volume) the new
    snapshot is copied there (0600) and the same ``keep`` applies there. Defaults: ``k8s:etcd:backup``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.backup
        salt-call --local k8s_etcd.backup directory=/var/backups/etcd keep=7 endpoints=https://127.0.0.1:2379 \\
            ca=/etc/kubernetes/pki/etcd-ca.crt cert=/etc/kubernetes/pki/etcd-healthcheck-client.crt \\
            key=/etc/kubernetes/pki/etcd-healthcheck-client.key
    """
    if directory is None or keep is None:
        settings = _backup_settings()
        directory = directory or settings["dir"]
        keep = keep if keep is not None else settings["keep"]
        copy_to = copy_to if copy_to is not None else settings.get("copy_to")
    if endpoints is None and "k8s.config" in __salt__:
        cluster = __salt__["k8s.config"]()["cluster"]
        endpoints = [cluster["etcd_local_url"]] if cluster["is_etcd"] else None
    if int(keep) < 1:
        raise SaltInvocationError(f"keep {keep!r} must be at least 1 (k8s:etcd:backup:keep)")
    directory = _private_dir(directory, "k8s:etcd:backup:dir")
    name = "etcd-snapshot-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ") + ".db"
    path = os.path.join(directory, name)
    with _client(endpoints, ca, cert, key, timeout) as client:
        endpoint = client.endpoints[0]
        client.endpoints = [endpoint]
        before = client.revision()
        fd, partial = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=files.TMP_SUFFIX)  # 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                client.snapshot(handle, endpoint)
                handle.flush()
                os.fsync(handle.fileno())
            facts = verify_snapshot(partial, min_revision=before)
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        files.fsync_dir(directory)
    result = dict(facts, path=path, endpoint=endpoint, removed=prune_snapshots(directory, keep))
    if copy_to:
        result["copied_to"] = _copy_private(path, copy_to)
        result["removed"] += prune_snapshots(copy_to, keep)
    return result


def push_snapshot(path=None):
    """
    Copy a snapshot (default: the newest in ``k8s:etcd:backup:dir``) to the salt-master with ``cp.push``: it lands
    in ``<master cachedir>/minions/<minion id>/files/<path>`` (the master needs ``file_recv: True`` and a
    ``file_recv_max_size`` above the snapshot's size, in MB). The bytes travel over Salt's file channel, not through
    the job cache or the event bus.

    CLI Example:

    .. code-block:: bash

        salt master01 k8s_etcd.push_snapshot
    """
    if path is None:
        found = snapshots()
        if not found:
            raise CommandExecutionError("no snapshot to push: k8s:etcd:backup:dir holds none (run k8s_etcd.backup)")
        path = found[0]["path"]
    if not __salt__["cp.push"](path):
        raise CommandExecutionError(
            f"cp.push of {path} failed: the salt-master needs file_recv: True and file_recv_max_size (MB) above "
            f"{os.path.getsize(path) // 1048576 + 1}"
        )
    return {"pushed": path}


# --------------------------------------------------------------------------------------------------------------------
# Restore
# --------------------------------------------------------------------------------------------------------------------
def move_aside(path, reason):
    """
    Rename ``path`` (a data directory) to ``<path>.<reason>-<UTC time>`` so nothing is lost; return the new name,
    or None when ``path`` does not exist.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.move_aside /var/lib/etcd removed
    """
    if not re.fullmatch(r"[a-z][a-z0-9-]*", str(reason)):
        raise SaltInvocationError(f"reason {reason!r} must be a lowercase word (it becomes part of a file name)")
    if not os.path.lexists(path):
        return None
    target = f"{path}.{reason}-{datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%S.%fZ')}"
    os.rename(path, target)
    files.fsync_dir(os.path.dirname(os.path.abspath(path)))
    return target


def restore_tool(directories=()):
    """
    The program that restores a snapshot: ``etcdutl`` (etcd >= 3.5) or else ``etcdctl`` (whose ``snapshot
    restore`` etcd 3.4 and 3.5 still have), looked for in ``directories`` (the etcd binary's) and then on PATH.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.restore_tool '[/usr/local/bin]'
    """
    for program in ("etcdutl", "etcdctl"):
        for directory in directories:
            candidate = os.path.join(directory, program)
            if os.access(candidate, os.X_OK):
                return candidate
        found = shutil.which(program)
        if found:
            return found
    raise CommandExecutionError(
        "neither etcdutl nor etcdctl was found next to etcd or on PATH; install etcd's client tools"
    )


def restore(snapshot_path, data_dir, name, peer_url, token, tool=None, bump_revision=1000000000):
    """
    Restore ``snapshot_path`` into ``data_dir`` as a new one-member cluster whose member is ``name`` at ``peer_url``
    (cluster token ``token``); the other members join it afterwards (``k8s.etcd`` adds them as learners). The snapshot
    is verified first; the restore goes to ``<data_dir>.restoring`` and is renamed into place only when complete; an
    existing ``data_dir`` is moved aside (``<data_dir>.before-restore-<time>``), never deleted. When the tool offers
    it (etcd >= 3.5), the revision is raised by ``bump_revision`` and marked compacted, so that no client's watch can
    silently resume at a revision the restore rewound (as Kubernetes' documentation recommends).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.restore /var/backups/etcd/etcd-snapshot-20261201T120000.000000Z.db /var/lib/etcd \\
            master01 https://10.240.0.11:2380 kubesalt
    """
    facts = verify_snapshot(snapshot_path)
    tool = tool or restore_tool()
    staging = f"{data_dir}.restoring"
    if os.path.lexists(staging):  # an interrupted restore's output: made again from the snapshot
        shutil.rmtree(staging)
    argv = [tool, "snapshot", "restore", str(snapshot_path), f"--name={name}", f"--data-dir={staging}"]
    argv += [f"--initial-cluster={name}={peer_url}", f"--initial-advertise-peer-urls={peer_url}"]
    argv += [f"--initial-cluster-token={token}"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ETCDCTL_API": "3"}
    usage = subprocess.run([tool, "snapshot", "restore", "--help"], capture_output=True, text=True, env=env)
    if bump_revision and "--bump-revision" in usage.stdout + usage.stderr:
        argv += [f"--bump-revision={int(bump_revision)}", "--mark-compacted"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise CommandExecutionError(
            f"{' '.join(argv[:3])} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-1500:]}"
        )
    aside = move_aside(data_dir, "before-restore")
    os.rename(staging, data_dir)
    os.chmod(data_dir, 0o700)
    return dict(facts, data_dir=data_dir, moved_aside=aside, tool=tool, snapshot=str(snapshot_path))
