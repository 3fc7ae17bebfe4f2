"""
kubesalt's runner, on the salt-master: the operator's view of a kubesalt cluster.

``salt-run k8s.status``
    One view of the cluster: every node with its roles, Ready, and kubelet/containerd/etcd versions; every kubesalt
    certificate on every minion with its days left, soonest first; the etcd members with health, leader, database
    size (and the last snapshot where a backup module reports one); the API servers and their health as the nodes
    see them; the minions that did not answer. The exit code is 1 when something needs attention -- a certificate
    due for renewal (or a CA past two thirds of its life), a node not Ready, an etcd member down or no quorum, an API
    server not ready, a minion missing -- and every reason is listed, so it can drive monitoring. ``--out=json`` for
    scripts; ``drift=True`` adds what a re-run would change (``state.apply test=True``) on every node.
``salt-run k8s.converge``
    ``state.orchestrate k8s.cluster`` with its progress: each step's start (the minions it targets) and end (result,
    time) printed as it happens and fired as ``kubesalt/orchestrate/<jid>/step/<step>/start|end``, then a table of
    every step's time.
``salt-run k8s.follow``
    Print the progress of an orchestration someone else started (``salt-run state.orchestrate k8s.cluster`` or
    ``k8s.converge``), from the events Salt fires for it, and end with the same table.

The master holds no Kubernetes or etcd credential: every fact comes from the nodes, through
``k8s_ops.node_status`` on each of them (a node reads its own certificates and versions; masters read the API with
their certificates; etcd members probe etcd with theirs). What comes back is names, dates, versions and states; no
key material passes through the master's job cache.

Which minions are kubesalt nodes: the minions matching the orchestration's target (role grains), and every node of
the ``k8s:nodes`` inventory as the answering minions' pillar has it. A node in either that does not answer is
reported missing.
"""

import datetime
import logging
import re
import threading
import time

import salt.client
import salt.runner
import salt.utils.event
import salt.utils.jid
import salt.utils.minions

log = logging.getLogger(__name__)

__virtualname__ = "k8s"

# The minions the orchestration (formulas/k8s/cluster.sls) targets: every kubesalt node by its role grain.
NODES = "G@role:master or G@role:worker or G@role:etcd"
OUTPUTTER = "kubesalt"


def __virtual__():
    return __virtualname__


def _console():
    """A function that shows one line on the salt-run console (a ``progress`` event of this runner job, printed by
    the kubesalt outputter) and logs it. The job's event object is taken now: another runner call in this process
    (the orchestration ``converge`` runs) injects its own into the module."""
    jid_event = globals().get("__jid_event__")

    def say(message):
        log.info("kubesalt: %s", message)
        if jid_event is not None:
            jid_event.fire_event({"message": message, "outputter": OUTPUTTER}, "progress")

    return say


def _answer(kind, report, failed):
    """
    The runner's return: the report for the ``kubesalt`` outputter, and an exit code for salt-run (which exits with
    a return's ``retcode``; ``__context__`` makes the job's ``success`` say the same in the job cache and events).
    """
    retcode = 1 if failed else 0
    __context__["retcode"] = retcode
    return {"outputter": OUTPUTTER, "report": dict(report, kind=kind), "retcode": retcode}


def _targeted(tgt, tgt_type):
    """The minions the master expects to match ``tgt`` (from its key list and grains cache)."""
    try:
        return sorted(salt.utils.minions.CkMinions(__opts__).check_minions(tgt, tgt_type)["minions"])
    except Exception as exc:  # a bad target expression: reported by the job itself
        log.warning("kubesalt: cannot expand target %r (%s)", tgt, exc)
        return []


# --------------------------------------------------------------------------------------------------------------------
# status: pure aggregation of the nodes' reports
# --------------------------------------------------------------------------------------------------------------------
def _first_line(text, limit=200):
    text = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _silent(full):
    """Whether a LocalClient full return says the minion did not return (``out: no_return``, ``failed`` or False)."""
    return full is False or (isinstance(full, dict) and bool(full.get("failed") or full.get("out") == "no_return"))


def _split_returns(returns):
    """(answered {minion: report}, errors {minion: message}, silent [minions]) from LocalClient full returns."""
    answered, errors, silent = {}, {}, []
    for minion, full in sorted((returns or {}).items()):
        if _silent(full):
            silent.append(minion)
            continue
        full = full if isinstance(full, dict) and "ret" in full else {"ret": full}
        if isinstance(full["ret"], dict) and "certificates" in full["ret"] and not full.get("retcode"):
            answered[minion] = full["ret"]
        else:
            errors[minion] = _first_line(full["ret"]) or "no answer"
    return answered, errors, silent


def _inventory(answered):
    """The k8s:nodes inventory (minion -> roles) as the answering minions' pillar has it; the CA minion's first."""
    inventory = {}
    for report in sorted(answered.values(), key=lambda r: r["id"] != r.get("ca_minion")):
        for node, roles in (report.get("inventory") or {}).items():
            inventory.setdefault(node, list(roles))
    return inventory


def _certificates(answered):
    rows = []
    for minion, report in answered.items():
        for path, cert in (report.get("certificates") or {}).items():
            rows.append(
                {
                    "minion": minion,
                    "name": cert.get("identity") or path.rsplit("/", 1)[-1],
                    "identity": cert.get("identity"),
                    "path": path,
                    "days_left": cert.get("days_left"),
                    "not_after": cert.get("not_after", ""),
                    "state": cert.get("state", "unreadable"),
                    "reasons": list(cert.get("reasons") or []),
                }
            )
    never = float("-inf")
    return sorted(rows, key=lambda r: (r["days_left"] if r["days_left"] is not None else never, r["minion"], r["name"]))


def _node_list(answered):
    """The Node objects as a master read them ({name: summary}) and who read them, or (None, errors)."""
    errors = []
    for report in sorted(answered.values(), key=lambda r: r["id"] != r.get("ca_minion")):
        listing = report.get("nodes")
        if not listing:
            continue
        if listing.get("items") is not None:
            return listing["items"], report["id"], []
        errors.append(f"{report['id']}: {_first_line(listing.get('error'))}")
    return None, None, errors


def _running_version(text):
    """v1.34.10 -> 1.34.10; containerd://2.3.4 -> 2.3.4."""
    return str(text or "").split("://")[-1].lstrip("v")


def _etcd(answered):
    reports = {m: r["etcd"] for m, r in answered.items() if r.get("etcd")}
    if not reports:
        return {"probed": False, "members": {}, "quorum": None, "leader": None}
    members, quorum, errors = {}, None, []
    for minion, report in sorted(reports.items()):
        health = report.get("health") or {}
        if "members" not in health:
            errors.append(f"{minion}: {_first_line(health.get('error'))}")
            continue
        quorum = health.get("quorum") if quorum is None else (quorum or health.get("quorum"))
        for name, seen in health["members"].items():
            entry = members.setdefault(name, {"id": seen.get("id"), "endpoint": seen.get("endpoint"), "seen": {}})
            entry["seen"][minion] = {"healthy": bool(seen.get("healthy")), "error": seen.get("error", "")}
    for name, entry in members.items():
        # A member's own view of itself counts first; else any member that reached it.
        seen = entry.pop("seen")
        own = seen.get(name)
        entry["healthy"] = own["healthy"] if own else any(s["healthy"] for s in seen.values())
        entry["error"] = "" if entry["healthy"] else next((s["error"] for s in seen.values() if s["error"]), "")
        status = (reports.get(name) or {}).get("status") or {}
        entry.update(
            version=status.get("version", ""),
            db_size=status.get("db_size"),
            is_leader=bool(status.get("is_leader")),
            raft_index=status.get("raft_index"),
            status_error=status.get("error", ""),
        )
    leaders = [name for name, entry in members.items() if entry["is_leader"]]
    snapshots = {m: r["last_snapshot"] for m, r in reports.items() if r.get("last_snapshot")}
    return {
        "probed": True,
        "members": dict(sorted(members.items())),
        "quorum": quorum,
        "leader": leaders[0] if leaders else None,
        "errors": errors,
        "last_snapshot": snapshots,
    }


def _api(answered):
    servers = {}
    for minion, report in answered.items():
        probe = report.get("api")
        if not probe:
            continue
        entry = servers.setdefault(
            probe["server"], {"server": probe["server"], "from": [], "ready": True, "errors": {}}
        )
        entry["from"].append(minion)
        if not probe.get("ready"):
            entry["ready"] = False
            entry["errors"][minion] = _first_line(probe.get("error"))
    return [servers[s] for s in sorted(servers)]


def _drift(returns):
    drift = {}
    for minion, full in sorted((returns or {}).items()):
        ret = full.get("ret") if isinstance(full, dict) and "ret" in full else full
        if _silent(full):
            drift[minion] = {"pending": [], "failed": [], "error": "did not answer"}
        elif isinstance(ret, dict):
            states = [s for s in ret.values() if isinstance(s, dict)]
            drift[minion] = {
                "pending": sorted(s.get("__id__", "?") for s in states if s.get("result") is None or s.get("changes")),
                "failed": sorted(s.get("__id__", "?") for s in states if s.get("result") is False),
            }
        else:
            drift[minion] = {"pending": [], "failed": [], "error": _first_line(ret)}
    return drift


def _summarize(returns, targeted=(), drift_returns=None):
    """
    The cluster report from the nodes' ``k8s_ops.node_status`` answers (LocalClient full returns), the minions
    the target matched (``targeted``) and, optionally, ``state.apply test=True`` answers: ``nodes``,
    ``certificates`` (soonest first), ``etcd``, ``api``, ``missing``, ``errors``, ``drift`` and ``attention`` (every
    reason for a non-zero exit code).
    """
    answered, errors, silent = _split_returns(returns)
    inventory = _inventory(answered)
    expected = sorted(set(inventory) | set(targeted) | set(answered) | set(errors) | set(silent))
    missing = [m for m in expected if m not in answered and m not in errors]
    node_list, listed_by, list_errors = _node_list(answered)
    probed = any(r.get("probed") for r in answered.values())
    etcd = _etcd(answered)
    attention = [f"minion {m} did not answer" for m in missing]
    attention += [f"minion {m} answered with an error: {e}" for m, e in errors.items()]

    nodes = {}
    for minion in expected:
        roles = inventory.get(minion, [])
        report = answered.get(minion, {})
        installed = report.get("versions") or {}
        entry = {
            "roles": roles,
            "answered": minion in answered,
            "ready": None,
            "reason": "",
            "versions": {c: {"installed": v, "running": ""} for c, v in installed.items()},
        }
        if etcd["members"].get(minion, {}).get("version"):
            entry["versions"].setdefault("etcd", {"installed": "", "running": ""})
            entry["versions"]["etcd"]["running"] = etcd["members"][minion]["version"]
        if node_list is not None and {"master", "worker"} & set(roles):
            node = node_list.get(minion)
            entry["ready"] = bool(node and node["ready"])
            entry["reason"] = node["reason"] if node else "NotRegistered"
            if node:
                for component, key in (("kubelet", "kubelet_version"), ("containerd", "runtime_version")):
                    entry["versions"].setdefault(component, {"installed": "", "running": ""})
                    entry["versions"][component]["running"] = _running_version(node[key])
            if not entry["ready"]:
                why = f"{node['reason']}: {_first_line(node['message'])}" if node else "no Node object"
                attention.append(f"node {minion} is not Ready ({why})")
        nodes[minion] = entry
    if node_list is None and list_errors:
        attention += [f"the Node objects could not be read ({e})" for e in list_errors]

    certificates = _certificates(answered)
    for cert in certificates:
        if cert["state"] != "OK":
            days = f"{cert['days_left']} days left" if cert["days_left"] is not None else "unreadable"
            why = f" ({cert['reasons'][0]})" if cert["reasons"] else ""
            attention.append(f"certificate {cert['name']} on {cert['minion']}: {cert['state']}, {days}{why}")

    if etcd["probed"]:
        attention += [f"etcd could not be probed from {e}" for e in etcd["errors"]]
        if etcd["quorum"] is False:
            attention.append("etcd has no quorum")
        for name, member in etcd["members"].items():
            if not member["healthy"]:
                attention.append(f"etcd member {name} is unhealthy: {member['error'] or 'no answer'}")
    api = _api(answered)
    for server in api:
        if not server["ready"]:
            detail = "; ".join(f"{m}: {e}" for m, e in sorted(server["errors"].items()))
            attention.append(f"API server {server['server']} is not ready ({detail})")

    drift = _drift(drift_returns) if drift_returns is not None else None
    for minion, d in (drift or {}).items():
        if d.get("error"):
            attention.append(f"drift of {minion} unknown: {d['error']}")
        elif d["pending"] or d["failed"]:
            attention.append(f"{minion}: a re-run would change {len(d['pending'])} state(s), {len(d['failed'])} fail")
    return {
        "ok": not attention,
        "attention": attention,
        "nodes": nodes,
        "nodes_listed_by": listed_by,
        "certificates": certificates,
        "etcd": etcd,
        "api": api,
        "probed": probed,
        "missing": missing,
        "errors": errors,
        "drift": drift,
    }


def status(drift=False, timeout=30, tgt=NODES, tgt_type="compound"):
    """
    One view of the cluster (see the module documentation); exit code 1, with every reason listed, when something
    needs attention. Asks ``k8s_ops.node_status`` of every kubesalt node (``tgt``, default the orchestration's role
    grains) and waits ``timeout`` seconds for the answers. With ``drift=True`` it also runs ``state.apply
    test=True`` on them (it changes nothing) and lists what a re-run would change per node; pending changes then
    count as needing attention too.

    CLI Example:

    .. code-block:: bash

        salt-run k8s.status
        salt-run k8s.status --out=json
        salt-run k8s.status drift=True timeout=120
    """
    targeted = _targeted(tgt, tgt_type)
    drift_returns = None
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        returns = client.cmd(tgt, "k8s_ops.node_status", tgt_type=tgt_type, timeout=timeout, full_return=True)
        if drift:
            drift_returns = client.cmd(
                tgt, "state.apply", tgt_type=tgt_type, kwarg={"test": True}, timeout=timeout, full_return=True
            )
    report = _summarize(returns, targeted, drift_returns)
    return _answer("status", report, report["attention"])


# --------------------------------------------------------------------------------------------------------------------
# Orchestration progress
# --------------------------------------------------------------------------------------------------------------------
def _slug(name):
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-") or "step"


def _clock(stamp=None):
    return time.strftime("%H:%M:%S", time.localtime(stamp or time.time()))


_FAILED_ON = re.compile(r"Run failed on minions: ([^\n]+)")
# The runner functions that run an orchestration (salt-run state.orchestrate and its aliases).
ORCHESTRATE = ("runner.state.orchestrate", "runner.state.orch", "runner.state.sls")


def _plan(mods, **kwarg):
    """``{(function or state name, target): step ID}`` of the ``salt.*`` steps of orchestration ``mods``, rendered
    as the orchestration renders it (``state.orchestrate_show_sls``): Salt names a ``salt.function`` step by its
    function when it starts, and by its ID when it ends. {} when it cannot be rendered."""
    try:
        with salt.runner.RunnerClient(__opts__) as runner:
            shown = runner.cmd("state.orchestrate_show_sls", arg=[mods], kwarg=kwarg, print_event=False)
        high = next(iter(shown.values())) if isinstance(shown, dict) and shown else {}
    except Exception as exc:  # the run itself reports a broken orchestration
        log.warning("kubesalt: cannot render %s to name its steps (%s)", mods, exc)
        return {}
    plan = {}
    for sid, body in (high if isinstance(high, dict) else {}).items():
        args = body.get("salt") if isinstance(body, dict) else None
        if not isinstance(args, list):
            continue
        settings = {k: v for item in args if isinstance(item, dict) for k, v in item.items()}
        plan[(settings.get("name", sid), settings.get("tgt"))] = sid
    return plan


def _stamp(data):
    """When an event was fired (its ``_stamp``), as a POSIX time; now when it has none."""
    try:
        return datetime.datetime.fromisoformat(str(data["_stamp"])).timestamp()
    except (KeyError, TypeError, ValueError):
        return time.time()


def _steps_of(orchestration):
    """{step ID: its state return} from a ``state.orchestrate`` return."""
    runs = (orchestration or {}).get("data") if isinstance(orchestration, dict) else None
    runs = next(iter(runs.values()), {}) if isinstance(runs, dict) and runs else {}
    return {r.get("__id__"): r for r in runs.values() if isinstance(r, dict)} if isinstance(runs, dict) else {}


class Follower:
    """
    Turns the events of one orchestration run into step starts and ends. Salt fires ``salt/run/<jid>/args`` when a
    ``salt.state``/``salt.function`` step starts, with its target (a function step under its function's name:
    ``plan``, from :py:func:`_plan`, gives its ID). Every step of k8s.cluster requires the one before, so a step has
    ended -- successfully -- when the next one starts; the last one when the run returns (``salt/run/<jid>/ret``,
    or ``kubesalt/orchestrate/<jid>/done`` from ``k8s.converge``), whose return gives its result. (Salt fires no
    event when a step of an orchestration ends: ``fire_event`` is dropped there.)

    ``jid`` None: follow the first orchestration that shows up. ``fire`` (an event bus) re-fires each start and end
    as ``kubesalt/orchestrate/<jid>/step/<step>/start|end``; ``say`` prints a line.
    """

    def __init__(self, jid=None, plan=None, expand=None, fire=None, say=None, planner=None):
        self.jid, self.plan, self.planner = jid, dict(plan or {}), planner
        self.expand, self.fire, self.say = expand or (lambda tgt, tgt_type: []), fire, say
        self.steps, self.current, self.done, self.outcome = {}, None, False, None

    def _emit(self, step, phase, data):
        if self.fire is not None:
            self.fire.fire_event(
                dict(data, run=self.jid, step=step["step"]),
                f"kubesalt/orchestrate/{self.jid}/step/{_slug(step['step'])}/{phase}",
            )

    def _detect(self, tag, data):
        parts = tag.split("/")
        if len(parts) != 4 or parts[:2] != ["salt", "run"]:
            return None
        if parts[3] == "args":
            return parts[2]
        if parts[3] == "new" and data.get("fun") in ORCHESTRATE:
            args = data.get("fun_args") or []
            mods = [a for a in args if isinstance(a, str)]
            if mods and self.planner and not self.plan:
                self.plan = self.planner(mods[0])
            # The steps carry the orchestration's jid: the runner job's own, unless the caller gave one.
            given = [a["orchestration_jid"] for a in args if isinstance(a, dict) and a.get("orchestration_jid")]
            return str(given[0]) if given else parts[2]
        return None

    def handle(self, tag, data):
        """Take one event; return True once the run has ended."""
        if not isinstance(data, dict) or self.done:
            return self.done
        if self.jid is None:
            self.jid = self._detect(tag, data)
            if self.jid is None:
                return False
            if self.say:
                self.say(f"{_clock()}  following orchestration {self.jid}")
        if tag == f"salt/run/{self.jid}/args":
            self.start(data)
        elif tag == f"salt/run/{self.jid}/ret":
            self.finish(data.get("return"), _stamp(data))
        elif tag == f"kubesalt/orchestrate/{self.jid}/done":
            rows = data.get("steps") or []
            runs = {
                r["step"]: {"__id__": r["step"], "__run_num__": i, **r, "duration": (r.get("duration") or 0) * 1000}
                for i, r in enumerate(rows)
            }
            self.finish({"data": {"k8s.converge": runs}}, _stamp(data))
        return self.done

    def start(self, data):
        now = _stamp(data)
        self._end(now, True)  # the step before has ended: this one requires it
        args = data.get("args") or {}
        tgt, tgt_type = data.get("tgt"), args.get("tgt_type", "glob")
        name = self.plan.get((data.get("name"), tgt), data.get("name"))
        targets = self.expand(tgt, tgt_type) if tgt else []
        self.current = step = {"step": name, "number": len(self.steps) + 1, "started": now}
        step.update(tgt=tgt, tgt_type=tgt_type, batch=args.get("batch"), targets=targets, result=None)
        self.steps[name] = step
        total = f"/{len(self.plan)}" if self.plan else ""
        batch = f", batch {step['batch']}" if step["batch"] else ""
        names = ", ".join(targets[:8]) + (", ..." if len(targets) > 8 else "")
        if self.say:
            count = f"{len(targets)} minion{'' if len(targets) == 1 else 's'}"
            self.say(f"{_clock(now)}  start  {step['number']}{total} {name}  ({count}{batch}: {names})")
        self._emit(step, "start", {k: step[k] for k in ("number", "tgt", "tgt_type", "batch", "targets")})

    def _end(self, now, result, duration=None, comment=""):
        step, self.current = self.current, None
        if step is None:
            return
        failed = _FAILED_ON.search(str(comment))
        step.update(
            result=result,
            duration=round(duration if duration is not None else now - step["started"], 1),
            comment=_first_line(comment, 300),
            failed=[m.strip() for m in failed.group(1).split(",")] if failed else [],
        )
        word = {True: "ok", False: "FAIL", None: "test"}.get(result, "?")
        if self.say:
            detail = f": {step['comment']}" if result is False and step["comment"] else ""
            self.say(f"{_clock(now)}  {word:5}  {step['step']}  {step['duration']:.1f} s{detail}")
        self._emit(step, "end", {k: step[k] for k in ("number", "result", "duration", "failed", "comment")})

    def finish(self, orchestration, now=None):
        """The run has returned: end the step still open with its result from the return."""
        self.outcome, self.done = orchestration, True
        if self.current is not None:
            ret = _steps_of(orchestration).get(self.current["step"]) or {}
            duration = float(ret["duration"]) / 1000.0 if ret.get("duration") is not None else None
            self._end(now or time.time(), ret.get("result"), duration, ret.get("comment", ""))

    def table(self):
        return sorted(self.steps.values(), key=lambda s: s["number"])


def _table_from_orchestration(data, steps):
    """Rows in run order from a state.orchestrate return (Salt's own result and duration of each step), with the
    targets the follower saw at each start; the follower's rows when there is no return."""
    by_name = {s["step"]: s for s in steps}
    runs = _steps_of(data)
    if not runs:
        return steps
    rows = []
    for ret in sorted(runs.values(), key=lambda r: r.get("__run_num__", 0)):
        name = ret.get("__id__") or ret.get("name")
        rows.append(
            {
                "step": name,
                "number": len(rows) + 1,
                "targets": by_name.get(name, {}).get("targets", []),
                "result": ret.get("result"),
                "duration": round(float(ret.get("duration") or 0) / 1000.0, 1),
                "start_time": ret.get("start_time", ""),
                "comment": _first_line(ret.get("comment", ""), 300),
            }
        )
    return rows


def converge(test=False, pillar=None, saltenv=None, pillarenv=None, mods="k8s.cluster"):
    """
    Run ``state.orchestrate k8s.cluster`` (``mods``) and show its progress as it happens: each step's start with
    the minions it targets, and its end with result and time -- printed on the console and fired on the master's
    event bus as ``kubesalt/orchestrate/<jid>/step/<step>/start`` and ``.../end`` (``kubesalt/orchestrate/<jid>/done``
    at the end), so ``salt-run state.event 'kubesalt/orchestrate/*' pretty=True`` in another terminal follows it
    too. Ends with a table of every step's time. The exit code is the orchestration's. ``test``, ``pillar``,
    ``saltenv`` and ``pillarenv`` are passed to ``state.orchestrate``; ``--out=json`` gives the table and the
    orchestration's whole return (``orchestration``).

    CLI Example:

    .. code-block:: bash

        salt-run k8s.converge
        salt-run k8s.converge test=True
    """
    jid = salt.utils.jid.gen_jid(__opts__)
    kwarg = {"test": test, "pillar": pillar, "saltenv": saltenv, "pillarenv": pillarenv, "orchestration_jid": jid}
    kwarg = {k: v for k, v in kwarg.items() if v is not None}
    outcome, say = {}, _console()
    started = time.time()
    plan = _plan(mods, **{k: v for k, v in kwarg.items() if k in ("pillar", "saltenv", "pillarenv")})
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=True) as bus:
        follower = Follower(jid, plan=plan, expand=_targeted, fire=bus, say=say)

        def run():
            try:
                with salt.runner.RunnerClient(__opts__) as runner:
                    outcome["ret"] = runner.cmd("state.orchestrate", arg=[mods], kwarg=kwarg, print_event=False)
            except Exception as exc:  # shown below, with the steps done so far
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        say(f"{_clock()}  orchestration {mods} ({jid}){' in test mode' if test else ''}")
        thread = threading.Thread(target=run, name=f"kubesalt-orchestrate-{jid}", daemon=True)
        thread.start()
        while thread.is_alive():
            event = bus.get_event(wait=1, full=True)
            if event:
                follower.handle(event["tag"], event["data"])
        deadline = time.monotonic() + 1.0  # events fired just before the return
        while time.monotonic() < deadline:
            event = bus.get_event(wait=0.2, full=True)
            if event:
                follower.handle(event["tag"], event["data"])
        orchestration = outcome.get("ret") or {}
        follower.finish(orchestration)
        retcode = orchestration.get("retcode", 1) if isinstance(orchestration, dict) else 1
        duration = round(time.time() - started, 1)
        steps = _table_from_orchestration(orchestration, follower.table())
        failed = [s["step"] for s in steps if s["result"] is False]
        done = {"run": jid, "result": retcode == 0, "duration": duration, "failed": failed}
        # The table travels with it (small: no minion returns), for k8s.follow in another terminal.
        done["steps"] = [{k: s.get(k) for k in ("step", "result", "duration", "comment")} for s in steps]
        bus.fire_event(done, f"kubesalt/orchestrate/{jid}/done")
    report = {
        "run": jid,
        "mods": mods,
        "test": bool(test),
        "result": retcode == 0 and "error" not in outcome,
        "duration": duration,
        "steps": steps,
        "failed": failed,
        "error": outcome.get("error", ""),
        "orchestration": orchestration,
    }
    return _answer("converge", report, not report["result"])


def follow(jid=None, timeout=3600):
    """
    Follow an orchestration started elsewhere -- ``salt-run state.orchestrate k8s.cluster`` or ``salt-run
    k8s.converge`` in another terminal -- from the events Salt fires for it, printing each step's start (the minions
    it targets) and end (result, time) as they happen; end with the table of steps. Without ``jid`` it follows the
    next orchestration that starts (or the one running, from its next step on); its first line, "waiting for ...",
    comes once it listens, so a run started after that line is followed from its first step with step names and
    numbers. Gives up after ``timeout`` seconds.

    CLI Example:

    .. code-block:: bash

        salt-run k8s.follow
        salt-run k8s.follow jid=20261201174501234567
    """
    say = _console()
    follower = Follower(str(jid) if jid else None, expand=_targeted, say=say, planner=_plan)
    started = time.monotonic()
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=True) as bus:
        # Said once subscribed: an orchestration started after this line is followed from its first step, plan included.
        say(f"{_clock()}  waiting for {'orchestration ' + str(jid) if jid else 'an orchestration'}")
        while time.monotonic() - started < float(timeout):
            event = bus.get_event(wait=1, full=True)
            if event and follower.handle(event["tag"], event["data"]):
                break
    steps = _table_from_orchestration(follower.outcome, follower.table())
    failed = [s["step"] for s in steps if s.get("result") is False]
    report = {
        "run": follower.jid,
        "result": follower.done and not failed,
        "duration": round(sum(s.get("duration") or 0 for s in steps), 1),
        "steps": steps,
        "failed": failed,
        "error": "" if follower.done else f"the orchestration did not end within {timeout} s",
    }
    return _answer("converge", report, not report["result"])
