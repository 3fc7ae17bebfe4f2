"""
kubesalt operations on a node: what the ``k8s.status`` runner asks every node, which certificates are due for
renewal, and the renewal itself.

- :py:func:`node_status`: this node as ``salt-run k8s.status`` shows it -- its roles (from ``k8s:nodes``), every
  certificate under ``pki_dir`` with its days left (``k8s_pki.status``), the kubelet, containerd and etcd versions
  installed here, and, where kubesalt manages the running system (``k8s:manage_services``), what this node sees of
  the cluster: the API server it talks to (``/readyz``), on masters every Node object, on etcd members its member's
  status and every member's health. Names, dates, versions and states only: no key, no kubeconfig.
- :py:func:`due_certificates`: the kubesalt certificates of this node that are due, by the same rule ``k8s.pki``
  renews by (``k8s_pki.check``: expired, fewer than ``k8s:pki:renew_days`` left, past two thirds of the lifetime,
  no longer the policy's subject or SANs, not from the current CA, missing). The renewal beacon
  (``_beacons/k8s_certs.py``) fires on it.
- :py:func:`renew`: re-issue what is due (``state.sls k8s.pki``) and restart exactly the services that use a
  renewed certificate, in highstate order, each followed by its health check (etcd quorum, the API server's
  ``/readyz``, the node Ready). Masters and etcd members restart under an etcd lock (``k8s_etcd.lock``), so no two
  of them are ever restarting at once.

Which service uses which certificate is read from this node's highstate (``state.show_lowstate``): the ``watch``
requisites that ``k8s/macros.jinja`` gives every service (its unit, files, certificates, secrets). The renewal
restarts what a highstate would restart for the same certificates, and nothing else.

The renewal trusts nothing but this node's own files and pillar: it re-checks what is due itself, so a forged beacon
event naming this node (any minion can fire any tag) renews nothing that is not due here.
"""

import logging
import os
import re
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "k8s_ops"

# The etcd key masters and etcd members take while they restart their services for renewed certificates.
RENEWAL_LOCK = "/kubesalt/locks/certificate-renewal"
# Seconds each probe of node_status may take.
PROBE_TIMEOUT = 5
_VERSION = re.compile(r"v?(\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]*)?)")
_ERRORS = (CommandExecutionError, SaltInvocationError)


def __virtual__():
    return __virtualname__


def _config(config=None, validate=False):
    return config if config is not None else __salt__["k8s.config"](validate=validate)


# --------------------------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------------------------
def parse_version(text):
    """
    The first ``MAJOR.MINOR.PATCH[-suffix]`` in a program's ``--version`` output (``Kubernetes v1.34.10``,
    ``containerd github.com/containerd/containerd/v2 v2.3.4 <commit>``, ``etcd Version: 3.6.14``), or "".

    CLI Example:

    .. code-block:: bash

        salt-call k8s_ops.parse_version "Kubernetes v1.34.10"
    """
    match = _VERSION.search(str(text or ""))
    return match.group(1) if match else ""


def _due(report):
    """{identity: {path, state, days_left, reasons}} of the certificates in a ``k8s_pki.check`` report that are not
    OK (renew, expired, missing or unreadable)."""
    return {
        identity: {
            "path": cert.get("path", ""),
            "state": cert["state"],
            "days_left": cert.get("days_left"),
            "reasons": list(cert.get("reasons") or []),
        }
        for identity, cert in sorted(report.items())
        if cert.get("state") != "OK"
    }


def _watched_identity(entry):
    """The certificate identity a ``watch`` entry of a service refers to (``{"k8s_pki": "<id> certificate"}``)."""
    if isinstance(entry, dict) and len(entry) == 1:
        (module, state_id), *_ = entry.items()
        if module == "k8s_pki" and isinstance(state_id, str) and state_id.endswith(" certificate"):
            return state_id[: -len(" certificate")]
    return None


def restarts_for(identities, lowstate):
    """
    The systemd units to restart for renewed certificate ``identities``, in highstate order: every
    ``service.running`` chunk of ``lowstate`` (``state.show_lowstate``) that watches ``<identity> certificate``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_ops.restarts_for '[apiserver, kubelet]' "$(salt-call --out=json state.show_lowstate | jq .local)"
    """
    wanted = set(identities or ())
    units = []
    for chunk in lowstate or []:
        if not isinstance(chunk, dict) or (chunk.get("state"), chunk.get("fun")) != ("service", "running"):
            continue
        watched = {_watched_identity(entry) for entry in chunk.get("watch") or []}
        if watched & wanted and chunk.get("name") not in units:
            units.append(chunk["name"])
    return units


def _changed_certificates(run):
    """The identities whose ``<identity> certificate`` state changed (or would change, result None) in a state run."""
    changed = []
    for state in (run or {}).values():
        if not isinstance(state, dict) or not str(state.get("__id__", "")).endswith(" certificate"):
            continue
        if state.get("changes") or state.get("result") is None:
            changed.append(state["__id__"][: -len(" certificate")])
    return sorted(changed)


def _failed(run):
    if not isinstance(run, dict):
        return [str(line) for line in (run if isinstance(run, list) else [run])]
    return [f"{s.get('__id__', sid)}: {s.get('comment')}" for sid, s in run.items() if s.get("result") is False]


# --------------------------------------------------------------------------------------------------------------------
# What the status runner asks every node
# --------------------------------------------------------------------------------------------------------------------
def _installed_versions(config, me):
    """{component: version} of the kubelet, containerd and etcd binaries this node runs (its units' ExecStart)."""
    cluster, execs = config["cluster"], {}
    if cluster["is_node"]:
        execs["kubelet"] = __salt__["k8s_conf.kubelet"](config, me)["exec"]
        execs["containerd"] = __salt__["k8s_conf.containerd"](config, me)["exec"]
    if cluster["is_etcd"]:
        execs["etcd"] = __salt__["k8s_conf.etcd"](config, me)["exec"]
    versions = {}
    for component, path in execs.items():
        if not os.access(path, os.X_OK):
            versions[component] = ""
            continue
        out = __salt__["cmd.run_all"](
            [path, "--version"], python_shell=False, timeout=PROBE_TIMEOUT, ignore_retcode=True, output_loglevel="quiet"
        )
        versions[component] = parse_version(out.get("stdout", "") + "\n" + out.get("stderr", ""))
    return versions


def _api(config):
    cluster = config["cluster"]
    identity = "apiserver-kubelet-client" if cluster["is_master"] else "kubelet"
    try:
        answer = __salt__["k8s_kube.readyz"](config, identity=identity, timeout=PROBE_TIMEOUT)
    except _ERRORS as exc:
        answer = {"ready": False, "error": str(exc)}
    return {"server": cluster["api_url"], "ready": bool(answer.get("ready")), "error": answer.get("error", "")}


def _nodes(config):
    identity = "admin" if config["cluster"]["is_ca"] else "apiserver-kubelet-client"
    try:
        return {"items": __salt__["k8s_kube.nodes"](config, identity=identity, timeout=PROBE_TIMEOUT), "error": ""}
    except _ERRORS as exc:
        return {"items": None, "error": str(exc)}


def _etcd(config):
    local = config["cluster"]["etcd_local_url"]
    conn = __salt__["k8s_etcd.connection_defaults"](config, identity="etcd-healthcheck-client")
    conn.update(endpoints=[local], timeout=PROBE_TIMEOUT)
    report = {"endpoint": local}
    try:
        report["status"] = __salt__["k8s_etcd.endpoint_status"](**conn)[local]
    except _ERRORS as exc:
        report["status"] = {"error": str(exc)}
    try:
        report["health"] = __salt__["k8s_etcd.cluster_health"](**conn)
    except _ERRORS as exc:
        report["health"] = {"error": str(exc)}
    # etcd backups are not part of this kubesalt; a module that makes them reports its last snapshot here.
    if "k8s_etcd.last_snapshot" in __salt__:
        try:
            report["last_snapshot"] = __salt__["k8s_etcd.last_snapshot"](config)
        except _ERRORS as exc:
            report["last_snapshot"] = {"error": str(exc)}
    return report


def node_status(config=None):
    """
    This node as ``salt-run k8s.status`` shows it: ``id``, ``roles`` and ``inventory`` (every node of
    ``k8s:nodes`` with its roles, as this node's pillar has it), ``ca_minion``, ``certificates``
    (``k8s_pki.status``: path -> identity, subject, not_after, days_left, state, reasons), ``versions`` (kubelet,
    containerd and etcd as installed here, from their ``--version``) and ``probed``. With ``k8s:manage_services``
    (``probed`` true) also what this node sees of the running cluster: ``api`` (the API server it talks to and its
    ``/readyz``; masters and workers), ``nodes`` (every Node object, read by masters) and ``etcd`` (this member's
    status -- version, leader, database size -- and every member's health; etcd members). Each probe takes at most
    5 seconds and an unreachable service is reported, not raised.

    CLI Example:

    .. code-block:: bash

        salt '*' k8s_ops.node_status
    """
    config = _config(config)
    me, cluster = str(__opts__["id"]), config["cluster"]
    nodes = config.get("nodes") or {}
    report = {
        "id": me,
        "roles": list(cluster["roles"]),
        "inventory": {n: sorted(v.get("roles") or []) for n, v in sorted(nodes.items()) if isinstance(v, dict)},
        "ca_minion": cluster["ca_minion"],
        "certificates": __salt__["k8s_pki.status"](config),
        "versions": _installed_versions(config, me) if me in nodes else {},
        "probed": bool(config["manage_services"]),
    }
    if report["probed"]:
        if cluster["is_node"]:
            report["api"] = _api(config)
        if cluster["is_master"]:
            report["nodes"] = _nodes(config)
        if cluster["is_etcd"]:
            report["etcd"] = _etcd(config)
    return report


# --------------------------------------------------------------------------------------------------------------------
# Renewal
# --------------------------------------------------------------------------------------------------------------------
def due_certificates(config=None, expected=None, renew_days=None):
    """
    The certificates of this node that ``k8s.pki`` would issue now: ``{identity: {"path", "state", "days_left",
    "reasons"}}``, ``state`` being ``renew``, ``expired``, ``missing`` or ``unreadable``. Empty when nothing is due.
    Only certificates this node is entitled to count (``k8s_pki.expectations``); CA certificates are reported by
    ``k8s_pki.status`` and renewed by no state.

    ``expected`` and ``renew_days`` (what ``k8s_pki.expectations`` and ``k8s:pki:renew_days`` were when ``k8s.pki``
    last ran) judge the files without the settings: the renewal beacon passes them, because it runs in the
    salt-minion's own process, which must not render the settings through the master's file server.

    CLI Example:

    .. code-block:: bash

        salt '*' k8s_ops.due_certificates
    """
    if expected is None:
        config = _config(config)
        expected = __salt__["k8s_pki.expectations"](config, str(__opts__["id"]))
        renew_days = config["pki"]["renew_days"]
    return _due(__salt__["k8s_pki.check"](expected, renew_days))


def _wait(check, timeout, what, interval=2.0):
    """Call ``check()`` until it returns True; raise after ``timeout`` seconds naming ``what`` and the last error."""
    deadline, last = time.monotonic() + float(timeout), ""
    while True:
        try:
            if check():
                return
        except _ERRORS as exc:
            last = f": {exc}"
        if time.monotonic() + interval > deadline:
            raise CommandExecutionError(f"{what}: not so after {float(timeout):g} s{last}")
        time.sleep(interval)


def _etcd_healthy(config, me):
    conn = __salt__["k8s_etcd.connection_defaults"](config, identity="etcd-healthcheck-client")
    conn.update(endpoints=[config["cluster"]["etcd_local_url"]], timeout=PROBE_TIMEOUT)
    health = __salt__["k8s_etcd.cluster_health"](**conn)
    return health["quorum"] and me in health["healthy"]


def _restart(config, me, unit):
    """Restart ``unit`` and wait until what depends on it works again."""
    if not __salt__["service.restart"](unit):
        raise CommandExecutionError(f"{unit}: systemd did not restart it (see journalctl -u {unit})")
    if unit == "etcd":
        _wait(lambda: _etcd_healthy(config, me), config["etcd"]["health_timeout"], f"etcd member {me} healthy")
    elif unit == "kube-apiserver":
        __salt__["k8s_kube.wait_ready"](config)
    elif unit == "kubelet":
        __salt__["k8s_kube.wait_node_ready"](config, me)
    else:
        _wait(lambda: __salt__["service.status"](unit), 30, f"{unit} running")


def _restart_all(config, me, units):
    cluster = config["cluster"]
    lock = None
    if cluster["is_master"] or cluster["is_etcd"]:
        ttl = config["pki"]["renewal"]["lock_ttl"]
        lock = __salt__["k8s_etcd.lock"](RENEWAL_LOCK, holder=me, ttl=ttl, wait=ttl, purpose="certificate renewal")
    done = []
    try:
        for unit in units:
            began = time.time()
            _restart(config, me, unit)
            done.append(
                {
                    "unit": unit,
                    "restarted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
                    "ready_after": round(time.time() - began, 1),
                }
            )
    except _ERRORS as exc:
        raise CommandExecutionError(f"restarted {[d['unit'] for d in done] or 'nothing'}, then {exc}") from exc
    finally:
        if lock is not None:
            try:
                __salt__["k8s_etcd.unlock"](lock["lease"])
            except _ERRORS as exc:  # the lease ends by itself after lock_ttl
                log.warning("kubesalt: could not release %s (%s); it ends with its lease", RENEWAL_LOCK, exc)
    return done, lock


def renew(test=False, config=None):
    """
    Renew this node's due certificates (see :py:func:`due_certificates`) and restart exactly the services that use
    a renewed one. Nothing due: nothing is applied, nothing restarted. Otherwise ``state.sls k8s.pki`` re-issues them
    (the CA minion signs under the pillar's policy, as always) and each service watching a renewed certificate in
    this node's highstate is restarted, in highstate order, then checked: etcd until the member is healthy with
    quorum, kube-apiserver until ``/readyz``, the kubelet until the node is Ready. On masters and etcd members the
    restarts happen under the etcd lock ``/kubesalt/locks/certificate-renewal`` (held at most
    ``k8s:pki:renewal:lock_ttl`` seconds; another master waits as long for it), so they restart one node at a time.

    Returns ``{"due", "renewed", "restarted", "lock", "comment"}`` and, after restarts, ``timeline`` (each unit,
    when it was restarted and how long until its check passed); with ``test=True`` what would be renewed and
    restarted, changing nothing. Sets a non-zero exit code when something failed.

    This is what kubesalt's renewal reactor (``k8s/reactor/renew.sls``) runs on a node whose beacon reported due
    certificates.

    CLI Example:

    .. code-block:: bash

        salt master02 k8s_ops.renew test=True
        salt master02 k8s_ops.renew
    """
    config = _config(config, validate=True)
    me = str(__opts__["id"])
    result = {"due": due_certificates(config), "renewed": [], "restarted": [], "lock": None, "comment": ""}
    if not result["due"]:
        result["comment"] = f"no kubesalt certificate of {me} is due for renewal; nothing done"
        return result
    run = __salt__["state.sls"]("k8s.pki", test=bool(test), queue=True)
    failed = _failed(run)
    if failed:
        __context__["retcode"] = 1
        result["comment"] = "k8s.pki failed: " + "; ".join(failed)
        return result
    result["renewed"] = _changed_certificates(run)
    units = restarts_for(result["renewed"], __salt__["state.show_lowstate"](queue=True)) if result["renewed"] else []
    if test:
        result.update(would_restart=units, comment=f"would renew {result['renewed']} and restart {units or 'nothing'}")
        return result
    if units and config["manage_services"]:
        try:
            result["timeline"], lock = _restart_all(config, me, units)
            result["restarted"] = [step["unit"] for step in result["timeline"]]
        except _ERRORS as exc:
            __context__["retcode"] = 1
            result["comment"] = f"renewed {result['renewed']}; {exc}"
            return result
        result["lock"] = {"name": RENEWAL_LOCK, "waited": lock["waited"]} if lock else None
    result["comment"] = f"renewed {result['renewed'] or 'nothing'}; restarted {result['restarted'] or 'nothing'}"
    return result
