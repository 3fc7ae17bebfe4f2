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
import json as jsonlib
import logging
import time

import requests  # a dependency of Salt itself
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import http, pki

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
        serves even without quorum). ``quorum`` is True when more than half of the members are healthy.
        """
        members = self.member_list()
        report = {"members": {}, "healthy": [], "unhealthy": []}
        for member in sorted(members, key=lambda m: m["name"] or m["id"]):
            name = member["name"] or member["id"]
            entry = {"id": member["id"], "endpoint": "", "healthy": False, "error": ""}
            if not member["client_urls"]:
                entry["error"] = "not started yet (no client URLs)"
            for url in member["client_urls"]:
                entry.update(self.health_of(url.rstrip("/")), endpoint=url)
                if entry["healthy"]:
                    break
            report["members"][name] = entry
            report["healthy" if entry["healthy"] else "unhealthy"].append(name)
        report["quorum"] = len(report["healthy"]) > len(members) // 2
        return report


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
    ``is_learner``. A member that has not started yet has an empty name and no client URLs.

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
