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
master, else ``etcd-healthcheck-client``). The core takes plain values and never reads Salt's dunders: the client
in ``kubesalt.etcd`` (:py:class:`kubesalt.etcd.EtcdClient`), the membership decisions in ``kubesalt.etcd_members``
and the snapshot files in ``kubesalt.etcd_backup``; the functions here are the Salt edge over them.

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

import json as jsonlib
import logging
import os

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import etcd, etcd_backup, etcd_members, topology

log = logging.getLogger(__name__)

__virtualname__ = "k8s_etcd"


def __virtual__():
    return __virtualname__


# --------------------------------------------------------------------------------------------------------------------
# Values (pure; kubesalt.etcd)
# --------------------------------------------------------------------------------------------------------------------


def render_value(value, json=False, name=None):
    """
    The exact string stored for ``value``. With ``json=True``, ``value`` is a mapping/list/number or a JSON text and
    is stored as canonical JSON (sorted keys, no whitespace), so equal data always gives equal bytes; text that is not
    valid JSON is refused. Without, ``value`` must be a string (numbers are converted).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.render_value '{"b": 1, "a": [1, 2]}' json=True
    """
    return etcd.render_value(value, json=json, name=name)


def same_value(current, desired, json=False):
    """
    Whether two stored values are the same. With ``json=True`` they are compared as data, so key order and whitespace
    do not count; a value that is not valid JSON is compared as text.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.same_value '{"a":1,"b":2}' '{"b": 2, "a": 1}' json=True
    """
    return etcd.same_value(current, desired, json=json)


# --------------------------------------------------------------------------------------------------------------------
# Salt glue: connection defaults from k8s.config, then thin wrappers over kubesalt.etcd.EtcdClient
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
    return etcd.connection_defaults(config, identity)


def _client(endpoints=None, ca=None, cert=None, key=None, timeout=None):
    given = {"endpoints": endpoints, "ca": ca, "cert": cert, "key": key}
    missing = [name for name, value in given.items() if value is None]
    if missing and "k8s.config" in __salt__:
        try:
            defaults = etcd.connection_defaults(__salt__["k8s.config"]())
        except CommandExecutionError as exc:
            raise CommandExecutionError(
                f"etcd connection argument(s) {', '.join(missing)} not given, and k8s.config could not supply them: "
                f"{exc}"
            ) from exc
        given.update({name: defaults[name] for name in missing})
    return etcd.EtcdClient(timeout=timeout, **given)


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
    etcd.check_key(name)
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
    etcd.check_key(prefix, "prefix")
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
    etcd.check_key(name)
    text = etcd.render_value(value, json=json, name=name)
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
    etcd.check_key(name)
    text = etcd.render_value(value, json=json, name=name)
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
    etcd.check_key(name, "prefix" if prefix else "key")
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
    etcd.check_key(name)
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
# Membership (the decisions: kubesalt.etcd_members)
# --------------------------------------------------------------------------------------------------------------------


def find_member(members, name):
    """
    The member of ``members`` (a :py:func:`member_list` answer) called ``name`` -- its name, hex id or one of its
    peer URLs -- or None.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.find_member "$(salt-call --out=json k8s_etcd.member_list | jq -c .local)" master03
    """
    return etcd_members.find_member(members, name)


def removal_problem(report, name):
    """
    Why removing member ``name`` would cost the cluster its quorum, or None when it is safe. ``report`` is a
    :py:func:`cluster_health` answer. A learner has no vote and can always go; a voting member only when, among the
    voting members that remain, more than half are healthy -- and never the last one.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.removal_problem "$(salt-call --out=json k8s_etcd.cluster_health | jq -c .local)" master03
    """
    return etcd_members.removal_problem(report, name)


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
        existing = etcd_members.find_member(members, peer_url)
        if existing:
            return dict(existing, added=False)
        for name in promote_first:
            learner_id = (etcd_members.find_member(members, name) or {}).get("id")
            if learner_id:
                etcd.retrying(lambda i=learner_id: client.member_promote(i), wait, f"etcd learner {name} not promoted")
        added = etcd.retrying(
            lambda: client.member_add([peer_url], learner=learner), wait, f"etcd member {peer_url} not added"
        )
    return dict(added, name="", client_urls=[], added=True)


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
        member = etcd_members.find_member(client.member_list(), name)
        if member is None:
            return {"removed": False, "member": None}
        health = client.cluster_health()
        problem = etcd_members.removal_problem(health, member["name"] or member["id"])
        if problem:
            raise CommandExecutionError(f"etcd member {name} not removed: {problem}")
        moved_to = etcd_members.lead_elsewhere(client, member, health)
        etcd.retrying(lambda: client.member_remove(member["id"]), wait, f"etcd member {name} not removed")
    return {"removed": True, "member": member, "leadership_moved_to": moved_to}


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
        member = etcd_members.find_member(client.member_list(), name)
        if member is None:
            raise CommandExecutionError(f"etcd member {name} is not in the cluster; nothing to promote")
        if not member["is_learner"]:
            return {"promoted": False, "member": member}
        etcd.retrying(lambda: client.member_promote(member["id"]), wait, f"etcd learner {name} not promoted")
    return {"promoted": True, "member": dict(member, is_learner=False)}


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
    return etcd_members.to_remove(
        topology.etcd_peer_urls(config).values(), member_list() if members is None else members
    )


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
    return etcd_members.not_voting(peers, member_list() if members is None else members)


def restore_seed(config, seed=None):
    """
    The member a restore starts from (``k8s.etcd.restore``): ``seed`` when given (it must be an etcd member of
    ``k8s:nodes``), else the CA minion when it is an etcd member, else the first etcd member.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.restore_seed "$(salt-call --out=json k8s.config | jq -c .local)" master02
    """
    return etcd_members.restore_seed(config["cluster"], seed)


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
    return etcd_members.holds_member(data_dir)


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
    return etcd_members.decide_initial_cluster(name, peer_url, inventory, members, health, restoring)


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
    if etcd_members.holds_member(config["paths"]["etcd_data_dir"]):
        return None
    peers = topology.etcd_peer_urls(config)
    others = cluster["etcd_other_client_urls"] if ask else []
    members = health = None
    if others:
        conn = etcd.connection_defaults(config, identity="etcd-healthcheck-client")
        conn.update(endpoints=others, timeout=timeout)
        try:
            with etcd.EtcdClient(**conn) as client:
                members, health = client.member_list(), client.cluster_health()
        except CommandExecutionError as exc:
            log.info("no other etcd member answered (%s); this is a first bootstrap", exc)
    restoring = os.path.exists(cluster["etcd_restore_marker"])
    return etcd_members.decide_initial_cluster(me, peers[me], peers, members, health, restoring=restoring)


def first_start_env(decision):
    """
    The environment file (``k8s_conf.etcd_first_start_file``) that carries a first-start ``decision``
    (:py:func:`decide_initial_cluster`) to etcd: ``ETCD_INITIAL_CLUSTER`` and ``ETCD_INITIAL_CLUSTER_STATE``. Names
    must be node names and URLs https URLs: nothing else reaches the file.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.first_start_env '{state: new, initial_cluster: {m1: "https://10.240.0.11:2380"}}'
    """
    return etcd_members.first_start_env(decision)


# --------------------------------------------------------------------------------------------------------------------
# Snapshots and restore (the files: kubesalt.etcd_backup)
# --------------------------------------------------------------------------------------------------------------------


def _backup_settings(config=None):
    if config is None and "k8s.config" in __salt__:
        config = __salt__["k8s.config"]()
    settings = ((config or {}).get("etcd") or {}).get("backup")
    if not settings:
        raise SaltInvocationError("no backup settings: pass directory= and keep= (or run where k8s.config works)")
    return settings


def snapshots(directory=None):
    """
    The snapshots kubesalt took in ``directory`` (default ``k8s:etcd:backup:dir``), newest first: ``path``,
    ``size``, ``mtime`` (Unix time).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.snapshots
    """
    return etcd_backup.snapshots(directory or _backup_settings()["dir"])


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
    return etcd_backup.verify(path, min_revision)


def prune_snapshots(directory, keep):
    """
    Remove all but the newest ``keep`` snapshots (kubesalt's names only) from ``directory``; return what was removed.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.prune_snapshots /var/backups/etcd 7
    """
    return etcd_backup.prune(directory, keep)


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
    return etcd_backup.take(lambda: _client(endpoints, ca, cert, key, timeout), directory, keep, copy_to)


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


def move_aside(path, reason):
    """
    Rename ``path`` (a data directory) to ``<path>.<reason>-<UTC time>`` so nothing is lost; return the new name,
    or None when ``path`` does not exist.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.move_aside /var/lib/etcd removed
    """
    return etcd_backup.move_aside(path, reason)


def restore_tool(directories=()):
    """
    The program that restores a snapshot: ``etcdutl`` (etcd >= 3.5) or else ``etcdctl`` (whose ``snapshot
    restore`` etcd 3.4 and 3.5 still have), looked for in ``directories`` (the etcd binary's) and then on PATH.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_etcd.restore_tool '[/usr/local/bin]'
    """
    return etcd_backup.restore_tool(directories)


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
    return etcd_backup.restore(snapshot_path, data_dir, name, peer_url, token, tool, bump_revision)
