"""`salt-run state.orchestrate k8s.cluster` and what it did, read as data (`--out=json`): per step its result,
duration and the states it changed on each minion; the boot highstates of nodes (the master's job cache); the
admin kubeconfig copied to the host; and the closing summary of `make lab` (profile, versions, per-phase times)."""

import datetime
import json
import os
import re
import subprocess
import threading

from .builds import kubectl, profile
from .common import (
    BRIDGE,
    MASTER_CONF,
    MIRROR_URL,
    NET,
    PILLAR_DIR,
    REPO,
    STATE,
    TIMINGS,
    mounted,
    phase,
    read,
    run,
    say,
    write,
)
from .inventory import first_master, node_dir
from .master import salt_argv, salt_run_json


def step_changes(step):
    """{minion: [state ids that changed]} of one orchestration step (salt.state / salt.function)."""
    changed = {}
    for minion, states in ((step.get("changes") or {}).get("ret") or {}).items():
        if isinstance(states, dict):
            ids = [s.get("__id__", sid) for sid, s in states.items() if isinstance(s, dict) and s.get("changes")]
        elif isinstance(states, list):  # saltutil.sync_*: the modules it synced
            ids = [str(s) for s in states]
        else:
            ids = []
        if ids:
            changed[minion] = ids
    return changed


def failed_states(step):
    """[(minion, state id, comment)] of the states that failed inside one step."""
    out = []
    for minion, states in ((step.get("changes") or {}).get("ret") or {}).items():
        if isinstance(states, dict):
            for sid, s in states.items():
                if isinstance(s, dict) and s.get("result") is False:
                    out.append((minion, s.get("__id__", sid), str(s.get("comment", ""))[:300]))
    return out


def summarize(data):
    """Steps of a `salt-run --out=json state.orchestrate` answer, in run order:
    [{id, result, seconds, changes: {minion: [ids]}, failed: [(minion, id, comment)], comment}]."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict) or not data["data"]:
        return None
    steps = next(iter(data["data"].values()))
    if not isinstance(steps, dict):
        return None
    rows = []
    for sid, step in sorted(steps.items(), key=lambda kv: kv[1].get("__run_num__", 0)):
        rows.append(
            {
                "id": step.get("__id__", sid),
                "result": step.get("result"),
                "seconds": (step.get("duration") or 0) / 1000.0,
                "changes": step_changes(step),
                "failed": failed_states(step),
                "comment": str(step.get("comment", ""))[:300],
            }
        )
    return rows


def follow_steps():
    """`salt-run k8s.follow` (the formula's runner, README "Operating the cluster") in the background: each step of
    the orchestration about to start is shown as it starts and ends, from the events Salt fires for it."""
    run(salt_argv("salt-run", "saltutil.sync_all"), check=False, capture=True)  # the runner from the served tree
    proc = subprocess.Popen(
        salt_argv("salt-run", "k8s.follow", "timeout=3600"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    listening = threading.Event()

    def relay():
        for line in proc.stdout:
            if "  waiting for " in line:
                listening.set()
            if line.strip() and not line.startswith("unclosed "):  # salt-run 3008 teardown noise
                say("  | " + line.rstrip())
        listening.set()  # it ended: nothing to wait for

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    # k8s.follow says "waiting for" once it listens: a run started before would be followed without its plan (the
    # steps named by function, not numbered).
    if not listening.wait(60):
        say("  (salt-run k8s.follow did not start listening within 60 s; the steps may show without names)")
    return proc, thread


def stop_following(follower, grace=30):
    """Let the follower print the run's end (it stops by itself when the orchestration's result arrives)."""
    proc, thread = follower
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=10)
    thread.join(5)


def orchestrate(lab):
    logs = os.path.join(STATE, "logs")
    os.makedirs(logs, exist_ok=True)
    log = os.path.join(logs, f"orchestrate-{datetime.datetime.now():%Y%m%d-%H%M%S}.json")
    with phase("orchestrate: salt-run state.orchestrate k8s.cluster"):
        follower = follow_steps()
        rc, data, raw = salt_run_json("state.orchestrate", "k8s.cluster")
        stop_following(follower)
        write(log, raw)
        rows = summarize(data)
        if rows is None:
            say(f"  salt-run exit code {rc}, no orchestration result in its output; see {log}")
            for line in raw.strip().splitlines()[-15:]:
                say("  " + line)
            return False, log
        for r in rows:
            n = sum(len(v) for v in r["changes"].values())
            say(f"  {'ok  ' if r['result'] else 'FAIL'} {r['seconds']:6.1f}s {n:3d} changed  {r['id']}")
            if not r["result"]:
                say(f"       {r['comment']}")
                for minion, sid, comment in r["failed"][:10]:
                    say(f"       failed state on {minion}: {sid}: {comment}")
        failed = [r["id"] for r in rows if not r["result"]]
        total = sum(sum(len(v) for v in r["changes"].values()) for r in rows)
        say(f"  {len(rows)} steps, {len(failed)} failed, {total} state changes; salt-run exit code {rc}; output: {log}")
    return rc == 0 and not failed, log


def boot_highstate_report(ids, since="0"):
    """Summarize each minion's latest boot highstate (jid >= since) from the master's job cache (what startup_states
    did)."""
    _, jobs, _ = salt_run_json("jobs.list_jobs", "search_function=state.highstate")
    latest = {}
    for jid, job in sorted((jobs or {}).items()):
        targets = job.get("Target") if isinstance(job, dict) else None
        if isinstance(targets, str) and targets in ids and jid >= since:
            latest[targets] = jid
    for mid, jid in sorted(latest.items()):
        _, ret, _ = salt_run_json("jobs.lookup_jid", jid)
        data = (ret or {}).get(mid)
        if isinstance(data, dict):
            failed = sum(1 for s in data.values() if isinstance(s, dict) and s.get("result") is False)
            say(f"  boot highstate {mid} ({jid}): {len(data)} states, {failed} failed")
        elif data is not None:
            say(f"  boot highstate {mid} ({jid}): {str(data)[:200]}")


def jid_now():
    return datetime.datetime.now().strftime("%Y%m%d%H%M%S%f")


def copy_admin_conf(lab):
    """Copy the CA minion's admin kubeconfig to the host as a self-contained file (0600): the formula's file names
    the certificates by path inside the node, so they are embedded (kubectl config view --flatten on a copy whose
    paths point into the node's root)."""
    first = first_master(lab)
    root = node_dir(first, "rootfs")
    src = os.path.join(root, "etc/kubernetes/admin.conf")
    dest = os.path.join(STATE, "admin.conf")
    if not (os.path.exists(src) and mounted(root)):
        return None
    rooted = re.sub(
        r"^(\s*(?:certificate-authority|client-certificate|client-key):\s*)(/\S+)",
        lambda m: m.group(1) + root + m.group(2),
        read(src),
        flags=re.M,
    )
    # On the node it names the node-local API balancer (127.0.0.1), which the host cannot reach: the host's copy
    # talks to that master's API server directly.
    rooted = re.sub(
        r"^(\s*server:\s*)https://127\.0\.0\.1:\d+\s*$",
        lambda m: f"{m.group(1)}https://{lab['nodes'][first]['ip']}:6443",
        rooted,
        flags=re.M,
    )
    tmp = dest + ".in"
    write(tmp, rooted, 0o600)
    res = run([kubectl(), "config", "view", "--raw", "--flatten", f"--kubeconfig={tmp}"], check=False, capture=True)
    os.unlink(tmp)
    if res.returncode != 0:
        say(f"  admin.conf from {first} not copied: {res.stderr.strip()}")
        return None
    write(dest, res.stdout, 0o600)
    return dest


def versions_line(manifest):
    v = manifest["versions"]
    prof = profile(manifest["profile"])
    return (
        f"profile {manifest['profile']}: "
        + ", ".join(f"{k} {v[k]}" for k in sorted(v))
        + f"; Debian {prof['node_suite']} nodes; salt 3008.3"
    )


def summary(lab, manifest, node_state):
    say("summary")
    print(f"  nodes ({BRIDGE}, {NET}):")
    for nid, n in sorted(lab["nodes"].items()):
        print(f"    {nid:10s} {n['ip']:13s} roles={','.join(n['roles']):11s} {node_state(nid)}")
    print("  " + versions_line(manifest))
    print("  debs: " + ", ".join(f"{k} {v}" for k, v in sorted(manifest.get("debs", {}).items())))
    print(f"  mirror: {MIRROR_URL} -> {manifest['mirror_dir']}")
    print(f"  salt-master: tests/lab/lab.sh salt|salt-run|salt-key ... (salt -c {MASTER_CONF}, in its mount namespace)")
    print(
        f"  pillar: {PILLAR_DIR}/k8s.sls; formulas served from {lab['salt_tree']}/formulas"
        + ("" if lab["salt_tree"] == REPO else " (LAB_SALT_TREE, kept for this lab)")
    )
    admin = os.path.join(STATE, "admin.conf")
    print(
        f"  admin kubeconfig: /etc/kubernetes/admin.conf on {first_master(lab)}; host copy {admin} "
        + (
            f"(present: kubectl --kubeconfig {admin} get nodes)"
            if os.path.exists(admin)
            else "(not yet: the control-plane formula writes it)"
        )
    )
    print("  reach a node: tests/lab/lab.sh exec <id> <cmd> | tests/lab/lab.sh shell <id>")
    total = sum(dt for _, dt in TIMINGS)
    print("  wall time per phase:")
    for name, dt in TIMINGS:
        print(f"    {dt:8.1f}s  {name}")
    print(f"    {total:8.1f}s  total")
    with open(os.path.join(STATE, "timings.log"), "a") as fh:
        fh.write(
            json.dumps(
                {
                    "at": datetime.datetime.now().isoformat(timespec="seconds"),
                    "phases": TIMINGS,
                    "total": total,
                    "profile": manifest["profile"],
                }
            )
            + "\n"
        )
