"""The lab's commands (tests/lab/lab.sh <command>; `make lab`, `make lab-down`, `make lab-status`):

    up | down | status
    leftovers                                         list what of a lab is left on this host (exit 1 if any)
    node-stop|node-start|node-restart <id>            stop/boot one node again (its disk survives)
    add-worker <id>                                   a new worker (e.g. worker03): pillar inventory + boot
    exec <id> <cmd...>                                run a command inside a node (nsenter)
    shell <id>                                        a shell inside a node
    salt <args...> / salt-run <args...> / salt-key <args...> / salt-cp <args...>   the lab master's CLIs
    check-images [<id>]                               import + run the OCI images with containerd's ctr in a node
    orchestrate                                       run the orchestration phase again
    conformance [--subset all|fast] [--focus RE] [--all] [--parallel N] [--out DIR] [-- e2e.test flags]
                                                      the upstream conformance suite against the lab (make
                                                      lab-conformance; labctl/conformance.py)

Environment: LAB_PROFILE (current | bookworm | old-components; tests/lab/build/profiles.json), LAB_MASTERS (1),
LAB_WORKERS (2) -- these three only when a lab is created; LAB_ORCHESTRATE=0 skips the orchestration;
LAB_SALT_TREE (this checkout: whose formulas/ and conf/master.d/kubesalt.conf the master uses); LAB_STATE
(/var/lib/kubesalt-lab); KUBESALT_CACHE (/var/cache/kubesalt); VENV (<repo>/.venv).

Layout: state of a running lab in $LAB_STATE (lab.json inventory, pillar/, master/ = `salt -c` dir, keys/,
nodes/<id>/{upper,work,rootfs,containerd}, logs/, admin.conf); builds cached in $KUBESALT_CACHE (kubernetes/,
wheels/, lab/{apt,debs,mirror,rootfs,checks}) keyed by their inputs. Each node = an overlay (upper dir per node) over
the cached base image of its profile's suite, its /var/lib/containerd a bind mount of a plain host directory
(containerd's overlayfs snapshotter cannot use an overlayfs upper dir). Node boot convergence: `startup_states:
highstate` (minion.d/kubesalt-lab-boot.conf) -- given to a new lab's nodes after their first `up`, to nodes from
add-worker at once (see nodes.boot_converge_on).
"""

import contextlib
import fcntl
import os
import re
import shutil
import sys
import time

from . import builds, conformance, master, mirror, nodes, orchestration
from .common import (
    BRIDGE,
    CACHE,
    HOST_IP,
    K8S_VERSION,
    LAB_JSON,
    MIRROR_URL,
    NODES_DIR,
    STATE,
    LabError,
    die,
    link_exists,
    mounted,
    phase,
    procs_matching,
    read,
    say,
    write,
)
from .inventory import load_lab, new_lab, node_dir, node_entry, node_ip, save_lab


@contextlib.contextmanager
def lock(wait=0):
    os.makedirs(STATE, exist_ok=True)
    with open(os.path.join(STATE, ".lock"), "w") as fh:
        end = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    die(f"another lab command holds {STATE}/.lock")
                time.sleep(1)
        yield


def ensure_infra(lab):
    """Everything but the nodes, each step idempotent. Returns (manifest, rootfs, pillar changed)."""
    name = lab["profile"]
    prof = builds.profile(name)
    say(f"lab profile {name}: {prof['description']}; nodes: Debian {prof['node_suite']} ({prof['node_suite_why']})")
    with phase("host tools + project venv"):
        builds.host_tools()
    with phase(f"kubernetes {K8S_VERSION} binaries"):
        say(f"  {builds.build_kubernetes()}")
    with phase(f"artifacts + OCI images (profile {name})"):
        manifest = builds.build_artifacts(name)
        say("  " + orchestration.versions_line(manifest))
    with phase(f"node base image (Debian {prof['node_suite']})"):
        rootfs = builds.build_rootfs(prof["node_suite"])
    with phase(f"network ({BRIDGE} {HOST_IP}/24)"):
        nodes.bridge_up()
    with phase(f"artifact mirror ({MIRROR_URL})"):
        conformance.place_extra_images(lab, manifest["mirror_dir"])
        mirror.mirror_start(manifest["mirror_dir"])
        say(f"  {mirror.mirror_check(manifest)} files served with the pinned digests")
    with phase("pillar + salt-master"):
        changed = master.write_pillar(lab, manifest)
        master.master_start(lab)
        save_lab(lab)
    return manifest, rootfs, changed


def node_state(nid):
    return "up" if nodes.init_pid(nid) else "down"


def cmd_up(args):
    with lock():
        lab = load_lab()
        if lab is None:
            lab = new_lab(builds.profile_name())
            say(f"new lab: {', '.join(sorted(lab['nodes']))}")
        else:
            lab["profile"] = builds.profile_name(lab)
            say(
                f"existing lab ({LAB_JSON}): {', '.join(sorted(lab['nodes']))}, salt tree {lab['salt_tree']} "
                "(LAB_PROFILE/LAB_MASTERS/LAB_WORKERS only apply to a new lab; `make lab-down` first to change them)"
            )
        manifest, rootfs, pillar_changed = ensure_infra(lab)
        suite = builds.profile(lab["profile"])["node_suite"]
        ids = sorted(lab["nodes"])
        nodes.host_sysctls_record()
        since = orchestration.jid_now()
        with phase(f"nodes ({len(ids)})"):
            started = [n for n in ids if not nodes.nspawn_pid(n)]
            for n in started:
                nodes.node_boot(n, lab, rootfs, suite)
            save_lab(lab)
            for n in ids:
                nodes.node_wait_booted(n)
        with phase("minions (test.ping; boot highstate of nodes that converge at boot)"):
            master.wait_minions(ids)
            if pillar_changed and len(started) < len(ids):
                master.salt("*", "saltutil.refresh_pillar", check=False)
            master.wait_idle(ids)
            converging = [n for n in started if lab["nodes"][n].get("boot_converge")]
            if converging:
                orchestration.boot_highstate_report(converging, since)
        stamp = os.path.join(CACHE, "lab", "checks", f"images-{manifest['key']}-{os.path.basename(rootfs)}.ok")
        if not os.path.exists(stamp):
            target = next((n for n in ids if n.startswith("worker")), ids[0])
            with phase(f"image check (ctr import + run in {target}, once per build)"):
                out = nodes.check_images(target, manifest)
                write(stamp, out)
                for line in out.splitlines():
                    if line.startswith(
                        ("busybox ran", "pause.c", "REF", "k8s.gcr.io", "kubesalt.lab", "containerd ", "runc version")
                    ):
                        say("  " + line)
        ok, log = True, None
        if os.environ.get("LAB_ORCHESTRATE", "1") != "0":
            ok, log = orchestration.orchestrate(lab)
        else:
            say("orchestrate: skipped (LAB_ORCHESTRATE=0)")
        for n in ids:
            if not lab["nodes"][n].get("boot_converge") and mounted(node_dir(n, "rootfs")):
                nodes.boot_converge_on(node_dir(n, "rootfs"))
                lab["nodes"][n]["boot_converge"] = True
        save_lab(lab)
        orchestration.copy_admin_conf(lab)
        orchestration.summary(lab, manifest, node_state)
        if not ok:
            die(f"the orchestration failed; see {log}")
    return 0


def leftovers():
    """What of a lab is still on this host: node processes, mounts under $LAB_STATE, veths, the bridge, the master
    and mirror, the nodes' cgroups."""
    found = []
    found += [f"process {p}: systemd-nspawn" for p in procs_matching(f"-D {NODES_DIR}/")]
    found += [f"process {p}: salt (lab master)" for p in procs_matching(f"-c {master.MASTER_CONF}")]
    if mirror.mirror_running():
        found.append("the artifact mirror")
    for line in (read("/proc/self/mountinfo", "") or "").splitlines():
        point = line.split()[4]
        if point.startswith(STATE + "/"):
            found.append(f"mount {point}")
    for line in os.popen("ip -o link show").read().splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name == BRIDGE or name.startswith(("ve-master", "ve-worker")):
            found.append(f"link {name}")
    for d in nodes.lab_cgroup_dirs():
        if os.path.isdir(d):
            found.append(f"cgroup {d}")
    return found


def cmd_leftovers(args):
    found = leftovers()
    for item in found:
        print(item)
    print(f"{len(found)} leftovers of the lab on this host")
    return 1 if found else 0


def cmd_down(args):
    with lock(wait=120):
        lab = load_lab() or {"nodes": {}}
        ids = set(lab["nodes"]) | (set(os.listdir(NODES_DIR)) if os.path.isdir(NODES_DIR) else set())
        with phase(f"stop nodes ({len(ids)})"):
            for n in sorted(ids):  # all power off at once; node_stop then waits for each
                if nodes.init_pid(n):
                    nodes.nsenter(n, ["systemctl", "--no-block", "poweroff"], check=False)
            for n in sorted(ids):
                nodes.node_stop(n)
            for pid in procs_matching(f"-D {NODES_DIR}/"):  # a node whose pid file was never written
                say(f"  killing stray systemd-nspawn {pid}")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            nodes.host_sysctls_restore()
        with phase("stop salt-master + mirror, remove bridge and cgroups"):
            master.master_stop()
            mirror.mirror_stop()
            nodes.bridge_down()
            nodes.cgroups_remove(nodes.lab_cgroup_dirs())
        with phase(f"remove lab state {STATE} (caches in {CACHE} stay)"):
            still = [n for n in ids if mounted(node_dir(n, "rootfs"))]
            if still:
                die(f"still mounted: {still}; not removing {STATE}")
            for entry in os.listdir(STATE):
                if entry != ".lock":
                    p = os.path.join(STATE, entry)
                    shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(STATE, ".lock"))
    with contextlib.suppress(OSError):
        os.rmdir(STATE)
    found = leftovers()
    if found:
        die("lab-down left: " + "; ".join(found))
    say("lab down: nothing of it is left on this host")
    return 0


def cmd_status(args):
    lab = load_lab()
    mp = master.master_pid()
    if lab is None:
        print(f"no lab ({LAB_JSON} missing)")
        print(
            f"bridge {BRIDGE}: {'present' if link_exists(BRIDGE) else 'absent'}; salt-master: "
            f"{'running' if mp else 'stopped'}; mirror: {'running' if mirror.mirror_running() else 'stopped'}"
        )
        return 0
    pids = {n: nodes.init_pid(n) for n in lab["nodes"]}
    pings = master.salt_json("*", "test.ping", "--timeout=5", timeout=60) if mp else {}
    print(f"profile: {lab.get('profile', '?')}")
    print(f"bridge {BRIDGE}: {'up ' + HOST_IP + '/24' if link_exists(BRIDGE) else 'absent'}")
    mpid = mirror.mirror_running()
    served = read(os.path.join(STATE, "mirror.dir"), "")
    print(f"mirror: {f'running pid {mpid} {MIRROR_URL} <- {served}' if mpid else 'stopped'}")
    print(f"salt-master: {'running pid ' + str(mp) + ' (salt -c ' + master.MASTER_CONF + ')' if mp else 'stopped'}")
    print(f"{'node':10s} {'ip':13s} {'roles':12s} {'node':5s} {'systemd':8s} {'ping':5s}")
    for nid, n in sorted(lab["nodes"].items()):
        state = "-"
        if pids[nid]:
            state = nodes.nsenter(nid, ["systemctl", "is-system-running"], check=False).stdout.strip() or "?"
        ping = "yes" if pings.get(nid) is True else "no"
        print(
            f"{nid:10s} {n['ip']:13s} {','.join(n['roles']):12s} {'up' if pids[nid] else 'down':5s} "
            f"{state:8s} {ping:5s}"
        )
    admin = os.path.join(STATE, "admin.conf")
    print(f"admin kubeconfig: {admin if os.path.exists(admin) else '(none yet)'}")
    return 0


def _need_lab():
    lab = load_lab()
    if lab is None:
        die("no lab: run `make lab` first")
    return lab


def _boot_and_converge(node_id, lab, rootfs):
    since = orchestration.jid_now()
    suite = builds.profile(builds.profile_name(lab))["node_suite"]
    with phase(f"boot {node_id}"):
        nodes.bridge_up()
        nodes.node_boot(node_id, lab, rootfs, suite)
        save_lab(lab)
        nodes.node_wait_booted(node_id)
        master.wait_minions([node_id])
    with phase(f"{node_id}: boot highstate"):
        master.wait_idle([node_id])
        orchestration.boot_highstate_report([node_id], since)


def cmd_node(args):
    if len(args) < 2:
        die(f"usage: {args[0]} <node id>")
    action, node_id = args[0], args[1]
    with lock():
        lab = _need_lab()
        if node_id not in lab["nodes"]:
            die(f"{node_id} is not in the lab ({', '.join(sorted(lab['nodes']))})")
        if action in ("node-stop", "node-restart"):
            with phase(f"stop {node_id}"):
                nodes.node_stop(node_id)
        if action in ("node-start", "node-restart"):
            _boot_and_converge(node_id, lab, lab["nodes"][node_id]["rootfs"])
    return 0


def cmd_add_worker(args):
    if len(args) != 1 or not re.match(r"^worker\d\d$", args[0]):
        die("usage: add-worker workerNN")
    node_id = args[0]
    with lock():
        lab = _need_lab()
        if node_id in lab["nodes"]:
            die(f"{node_id} is already in the lab")
        ip = node_ip(node_id)
        if any(n["ip"] == ip for n in lab["nodes"].values()):
            die(f"{ip} is taken")
        lab["profile"] = builds.profile_name(lab)
        lab["nodes"][node_id] = dict(node_entry(node_id), boot_converge=True)
        manifest, rootfs, _ = ensure_infra(lab)
        first_rootfs = next((n["rootfs"] for n in lab["nodes"].values() if n.get("rootfs")), rootfs)
        with phase(f"inventory: {node_id} {ip} in the pillar, /etc/hosts of running nodes"):
            running = [n for n in lab["nodes"] if n != node_id and nodes.init_pid(n)]
            for n in running:
                nodes.write_hosts(node_dir(n, "rootfs"), lab)
            if running:
                master.salt("-L", ",".join(running), "saltutil.refresh_pillar", check=False)
        _boot_and_converge(node_id, lab, first_rootfs)
    return 0


def cmd_exec(args):
    if len(args) < 2:
        die("usage: exec <node id> <command...>")
    pid = nodes.init_pid(args[0])
    if not pid:
        die(f"{args[0]} is not running")
    os.execvpe("nsenter", ["nsenter", "-t", str(pid), "-a"] + args[1:], nodes.node_env())


def cmd_salt(name, args):
    argv = master.salt_argv(name, *args)
    os.execvp(argv[0], argv)


def cmd_check_images(args):
    lab = _need_lab()
    node_id = (
        args[0] if args else next((n for n in sorted(lab["nodes"]) if n.startswith("worker")), sorted(lab["nodes"])[0])
    )
    print(nodes.check_images(node_id, builds.build_artifacts(builds.profile_name(lab))))
    return 0


def cmd_orchestrate(args):
    lab = _need_lab()
    with lock():
        ok, _ = orchestration.orchestrate(lab)
        orchestration.copy_admin_conf(lab)
    return 0 if ok else 1


COMMANDS = {
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "leftovers": cmd_leftovers,
    "node-stop": lambda a: cmd_node(["node-stop"] + a),
    "node-start": lambda a: cmd_node(["node-start"] + a),
    "node-restart": lambda a: cmd_node(["node-restart"] + a),
    "add-worker": cmd_add_worker,
    "exec": cmd_exec,
    "shell": lambda a: cmd_exec(a[:1] + ["bash", "-l"]),
    "check-images": cmd_check_images,
    "orchestrate": cmd_orchestrate,
    "conformance": lambda a: conformance.cmd_conformance(a, lock),
    **{name: (lambda a, n=name: cmd_salt(n, a)) for name in ("salt", "salt-run", "salt-key", "salt-cp")},
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if os.geteuid() != 0:
        die("the lab needs root (network links, mounts, systemd-nspawn)")
    cmd, args = (argv[0], argv[1:]) if argv else ("up", [])
    if cmd not in COMMANDS:
        print(__doc__)
        return 2
    try:
        return COMMANDS[cmd](args) or 0
    except LabError as exc:
        return exc.code
    except KeyboardInterrupt:
        say(f"{cmd}: interrupted")
        return 130
