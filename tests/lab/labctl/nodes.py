"""Nodes: systemd-nspawn machines (systemd as PID 1) on the host bridge kslab0, each an overlay over the cached base
image with a cgroup of its own in every hierarchy; their network, identity and salt-minion configuration; the
host-wide sysctls their kubelets change; and the reach into them (nsenter).

Nothing is routed or NATed: the bridge (10.240.0.1/24) only joins the nodes' veths; the host does not forward
(net.ipv4.ip_forward is left as it is, and the lab refuses to start if it is 1)."""

import contextlib
import datetime
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import textwrap
import time

from .common import (
    BRIDGE,
    HOST_IP,
    MASTER_PKI,
    MIRROR_URL,
    NET,
    NODE_PATH,
    STATE,
    alive,
    cmdline,
    die,
    link_exists,
    mounted,
    read,
    read_pid,
    run,
    say,
    wait_for,
    write,
)
from .inventory import node_dir

NSPAWN_FILTER = "@keyring @privileged @mount @module bpf"
# systemd >= 256 (trixie's 257) refuses to run on cgroup v1 unless told on its "kernel command line", which in a
# container is PID 1's own argument list. This host is cgroup v1 (hybrid); nspawn gives the node the same layout.
INIT_ARGS = {"bookworm": [], "trixie": ["SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1"]}


# -- network -----------------------------------------------------------------------------------------------------------
def bridge_up():
    if read("/proc/sys/net/ipv4/ip_forward", "0").strip() != "0":
        die(
            "net.ipv4.ip_forward is 1 on this host: the lab would route node traffic to other interfaces. "
            "It does not change that setting itself."
        )
    if not link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE], capture=True).stdout
    if f"{HOST_IP}/24" not in addrs:
        run(["ip", "addr", "add", f"{HOST_IP}/24", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def bridge_down():
    if link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE])


# Global (not network-namespaced) sysctls that the kubelet sets at start (setupKernelTunables). The nodes' /proc/sys
# is writable (SYSTEMD_NSPAWN_API_VFS_WRITABLE, LAB-NOTES), so a kubelet in a node changes them for the whole host.
# The lab records the host's values before the first node boots and puts them back on `lab-down`.
HOST_SYSCTLS = [
    "kernel/panic",
    "kernel/panic_on_oops",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
]
HOST_SYSCTLS_FILE = os.path.join(STATE, "host-sysctls.json")


def host_sysctls_record():
    if not os.path.exists(HOST_SYSCTLS_FILE):
        values = {k: read(f"/proc/sys/{k}", "").strip() for k in HOST_SYSCTLS}
        write(HOST_SYSCTLS_FILE, json.dumps(values, indent=1, sort_keys=True) + "\n")


def host_sysctls_restore():
    saved = json.loads(read(HOST_SYSCTLS_FILE, "{}"))
    for key, value in sorted(saved.items()):
        now = read(f"/proc/sys/{key}", "").strip()
        if value and now != value:
            say(f"  restoring host sysctl {key.replace('/', '.')}: {now} -> {value} (the nodes' kubelets set it)")
            with open(f"/proc/sys/{key}", "w") as fh:
                fh.write(value)


# -- processes of a node -----------------------------------------------------------------------------------------------
def nspawn_pid(node_id):
    pid = read_pid(node_dir(node_id, "nspawn.pid"))
    return pid if alive(pid) and "systemd-nspawn" in cmdline(pid) else 0


def init_pid(node_id):
    """PID (host namespace) of the node's systemd: the nspawn process's child."""
    pid = nspawn_pid(node_id)
    if not pid:
        return 0
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            children = [int(c) for c in fh.read().split()]
    except OSError:
        return 0
    for c in children:
        if read(f"/proc/{c}/comm", "").strip() == "systemd":
            return c
    return 0


def node_env():
    return {"PATH": NODE_PATH, "HOME": "/root", "TERM": os.environ.get("TERM", "dumb"), "LANG": "C.UTF-8"}


def nsenter(node_id, argv, check=True, capture=True, timeout=None, input=None):
    pid = init_pid(node_id)
    if not pid:
        die(f"{node_id} is not running")
    return run(
        ["nsenter", "-t", str(pid), "-a"] + list(argv),
        check=check,
        capture=capture,
        env=node_env(),
        timeout=timeout,
        input=input,
    )


# -- a node's disk and identity ----------------------------------------------------------------------------------------
def node_prepare(node_id, lab, rootfs):
    """Overlay (node disk = upper dir over the cached base) + the node's identity, network and salt-minion config."""
    node = lab["nodes"][node_id]
    lower = node.setdefault("rootfs", rootfs)
    if not os.path.exists(os.path.join(lower, ".complete")):
        die(f"{node_id}: its base image {lower} is gone from the cache; `make lab-down` and start again")
    upper, work, merged = node_dir(node_id, "upper"), node_dir(node_id, "work"), node_dir(node_id, "rootfs")
    for d in (upper, work, merged, node_dir(node_id, "containerd")):
        os.makedirs(d, exist_ok=True)
    if not mounted(merged):
        run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", merged])
    R = lambda p: os.path.join(merged, p.lstrip("/"))  # noqa: E731
    if not read(R("/etc/machine-id"), "").strip():
        write(R("/etc/machine-id"), os.urandom(16).hex() + "\n", 0o444)
    write(R("/etc/hostname"), node_id + "\n")
    write_hosts(merged, lab)
    write(R("/etc/resolv.conf"), "# kubesalt lab: no DNS; every node name is in /etc/hosts\n")
    # Read by kubesalt-lab-network.service. The default route points at the host, which does not forward: nothing
    # leaves the lab, but Kubernetes components want a default route to pick their address.
    write(R("/etc/kubesalt-lab/network.env"), f"ADDRESS={node['ip']}/{NET.prefixlen}\nGATEWAY={HOST_IP}\n")
    write(
        R("/etc/salt/minion.d/kubesalt-lab.conf"),
        textwrap.dedent(f"""\
        # kubesalt lab minion. Boot convergence (startup_states: highstate) is in kubesalt-lab-boot.conf.
        id: {node_id}
        master: {HOST_IP}
        acceptance_wait_time: 2
        random_reauth_delay: 0
        auth_tries: 10
        log_level_logfile: info
        """),
    )
    if node.get("boot_converge"):
        boot_converge_on(merged)
    write(
        R("/etc/salt/grains"),
        "# kubesalt lab: targeting only (authorization comes from k8s:nodes)\nrole:\n"
        + "".join(f"  - {r}\n" for r in node["grain_roles"]),
    )
    from .master import gen_keys  # keys are the master's business; the node only receives its own

    pem, pub = gen_keys(node_id)
    pki = R("/etc/salt/pki/minion")
    os.makedirs(pki, mode=0o700, exist_ok=True)
    shutil.copyfile(pem, os.path.join(pki, "minion.pem"))
    os.chmod(os.path.join(pki, "minion.pem"), 0o400)
    shutil.copyfile(pub, os.path.join(pki, "minion.pub"))
    shutil.copyfile(os.path.join(MASTER_PKI, "master.pub"), os.path.join(pki, "minion_master.pub"))


def boot_converge_on(merged):
    """README "Node boot": the minion runs highstate at every start, so a rebooted node converges by itself. The
    nodes of a new lab get this only after their first `up` (after the orchestration phase): on the very first boot
    the cluster does not exist yet, and highstates racing each other and the orchestration (waiting for an API that
    is not there) only cost minutes. Nodes added later (add-worker) have it from their first boot."""
    write(
        os.path.join(merged, "etc/salt/minion.d/kubesalt-lab-boot.conf"),
        textwrap.dedent("""\
        # kubesalt lab: converge at every minion start (README "Node boot").
        startup_states: highstate
        """),
    )


def write_hosts(merged, lab):
    lines = [
        "# kubesalt lab (written by tests/lab/labctl)",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{HOST_IP}\tkslab-host",
    ]
    lines += [
        f"{n['ip']}\t{nid}" for nid, n in sorted(lab["nodes"].items(), key=lambda kv: ipaddress.ip_address(kv[1]["ip"]))
    ]
    write(os.path.join(merged, "etc/hosts"), "\n".join(lines) + "\n")


# -- cgroups -----------------------------------------------------------------------------------------------------------
def cgroup_homes():
    """(mount point, this process's path) of every cgroup hierarchy this process is in (v1 controllers, name=systemd,
    the v2 'unified' one)."""
    mounts = []
    for line in read("/proc/self/mountinfo", "").splitlines():
        left, _, right = line.partition(" - ")
        fields = right.split()
        if len(fields) >= 3 and fields[0] in ("cgroup", "cgroup2"):
            mounts.append((fields[0], set(fields[2].split(",")), left.split()[4]))
    homes = []
    for line in read("/proc/self/cgroup", "").splitlines():
        _, controllers, path = line.split(":", 2)
        wanted = set(controllers.split(",")) if controllers else set()
        for fstype, opts, mountpoint in mounts:
            if (fstype == "cgroup2") == (not wanted) and wanted <= opts:
                homes.append((mountpoint, path))
                break
    return homes


def node_cgroup_dirs(node_id):
    """The node's own cgroup, `kubesalt-lab/<node>` below this process's, in every hierarchy."""
    return [os.path.join(mountpoint + path.rstrip("/"), "kubesalt-lab", node_id) for mountpoint, path in cgroup_homes()]


def lab_cgroup_dirs():
    """`kubesalt-lab` below this process's cgroup, in every hierarchy (what lab-down must leave empty)."""
    return [os.path.join(mountpoint + path.rstrip("/"), "kubesalt-lab") for mountpoint, path in cgroup_homes()]


def node_cgroups(node_id):
    """A cgroup of its own for the node in every hierarchy, for systemd-nspawn to start in. Without it every node's
    systemd shares one cgroup root (nspawn --keep-unit puts the payload under the caller's cgroup), so the nodes'
    system.slice and kubepods.slice are the same directories and one node's systemd or kubelet removes cgroups
    another node's containers live in (seen: 'runc exec: ... cgroup.procs: no such file or directory',
    units failing with status 219/CGROUP)."""
    dirs = []
    for base in node_cgroup_dirs(node_id):
        cgroups_remove([base])  # what a previous boot of this node left, if empty
        try:
            os.makedirs(base, exist_ok=True)
            # cpuset: a new v1 cgroup starts with no CPUs/memory nodes; take the parent's, top-down
            for d in (os.path.dirname(base), base):
                for name in ("cpuset.cpus", "cpuset.mems"):
                    if os.path.exists(os.path.join(d, name)) and not read(os.path.join(d, name), "").strip():
                        with open(os.path.join(d, name), "w") as fh:  # cgroupfs: no temp file + rename
                            fh.write(read(os.path.join(os.path.dirname(d), name)))
            dirs.append(base)
        except OSError as exc:
            say(f"{node_id}: no cgroup of its own in {base} ({exc}); it shares the host's")
    return dirs


def cgroups_remove(dirs):
    """Remove the given cgroups and their empty children (os.walk bottom-up); busy ones stay."""
    for base in dirs:
        for root, _, _ in os.walk(base, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(root)


# -- boot, stop --------------------------------------------------------------------------------------------------------
def veth_name(node_id):
    return f"ve-{node_id}"[:15]


def node_boot(node_id, lab, rootfs, suite):
    if nspawn_pid(node_id):
        return
    node_prepare(node_id, lab, rootfs)
    veth = veth_name(node_id)
    if link_exists(veth):  # left over from a killed node
        run(["ip", "link", "del", veth], check=False)
    log = open(node_dir(node_id, "nspawn.log"), "a")  # noqa: SIM115 -- held open by the daemon it is handed to
    log.write(f"\n===== boot {datetime.datetime.now().isoformat(timespec='seconds')}\n")
    log.flush()
    env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="1")
    argv = [
        "systemd-nspawn",
        "--register=no",
        "--keep-unit",
        "-D",
        node_dir(node_id, "rootfs"),
        "-M",
        node_id,
        "--boot",
        "--capability=all",
        f"--system-call-filter={NSPAWN_FILTER}",
        "--bind=/dev/kmsg",
        "--private-network",
        "--network-veth",
        "--console=passive",
        "--resolv-conf=off",
        f"--bind={node_dir(node_id, 'containerd')}:/var/lib/containerd",
    ] + INIT_ARGS.get(suite, [])
    cgroups = node_cgroups(node_id)

    def enter_cgroups():
        for base in cgroups:
            with contextlib.suppress(OSError), open(os.path.join(base, "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))

    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=env,
        start_new_session=True,
        preexec_fn=enter_cgroups,
    )
    write(node_dir(node_id, "nspawn.pid"), f"{proc.pid}\n")
    wait_for(
        lambda: (
            link_exists(veth)
            or (
                proc.poll() is not None
                and die(f"{node_id}: systemd-nspawn exited ({proc.returncode}); see {node_dir(node_id, 'nspawn.log')}")
            )
        ),
        30,
        interval=0.2,
        what=f"{veth}",
    )
    run(["ip", "link", "set", veth, "master", BRIDGE, "up"])
    wait_for(lambda: init_pid(node_id), 30, what=f"{node_id}'s systemd")


def node_wait_booted(node_id, timeout=120):
    def booted():
        if not nspawn_pid(node_id):
            die(f"{node_id}: systemd-nspawn exited while booting; see {node_dir(node_id, 'nspawn.log')}")
        res = nsenter(node_id, ["systemctl", "is-system-running"], check=False)
        state = res.stdout.strip()
        return state if state in ("running", "degraded") else None

    state = wait_for(booted, timeout, interval=1, what=f"{node_id} to finish booting")
    if state == "degraded":
        failed = nsenter(node_id, ["systemctl", "--failed", "--no-legend", "--plain"], check=False).stdout.strip()
        say(f"{node_id}: booted (degraded: {failed})")
    return state


def node_stop(node_id, timeout=60):
    pid = nspawn_pid(node_id)
    init = init_pid(node_id)
    if pid:
        if init:
            nsenter(node_id, ["systemctl", "--no-block", "poweroff"], check=False)
        end = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.5)
        if alive(pid):
            say(f"{node_id}: no clean poweroff within {timeout}s: SIGTERM to systemd-nspawn")
            os.kill(pid, signal.SIGTERM)
            end = time.monotonic() + 15
            while alive(pid) and time.monotonic() < end:
                time.sleep(0.5)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        if init and alive(init):
            os.kill(init, signal.SIGKILL)  # PID 1 of the node's PID namespace: takes the whole node with it
        wait_for(lambda: not alive(pid) and not (init and alive(init)), 20, what=f"{node_id} to stop")
    merged = node_dir(node_id, "rootfs")
    if os.path.isdir(merged) and mounted(merged) and run(["umount", merged], check=False, quiet=True).returncode != 0:
        run(["umount", "-l", merged])
    veth = veth_name(node_id)
    if link_exists(veth):
        run(["ip", "link", "del", veth], check=False, quiet=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(node_dir(node_id, "nspawn.pid"))
    cgroups_remove(node_cgroup_dirs(node_id))


# -- image check (ctr inside a node) -----------------------------------------------------------------------------------
CHECK_SCRIPT = r"""
set -eu
d=/var/lib/containerd/kubesalt-lab-check   # on the node's plain bind mount: the overlayfs snapshotter needs it
run=/run/kubesalt-lab-check
cleanup() { [ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null; rm -rf "$d" "$run"; }
trap cleanup EXIT
rm -rf "$d" "$run"; mkdir -p "$d/bin" "$d/img" "$run"
cd "$d"
curl -fsS "$MIRROR/$CONTAINERD" | tar -xz -C "$d"
curl -fsSo bin/runc "$MIRROR/$RUNC" && chmod 0755 bin/runc
curl -fsSo img/pause.tar "$MIRROR/$PAUSE"; curl -fsSo img/busybox.tar "$MIRROR/$BUSYBOX"
echo "$PAUSE_SHA  img/pause.tar" | sha256sum -c -
echo "$BUSYBOX_SHA  img/busybox.tar" | sha256sum -c -
cat > config.toml <<EOF
version = 2
root = "$d/root"
state = "$run/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$run/containerd.sock"
[ttrpc]
  address = "$run/containerd.sock.ttrpc"
EOF
export PATH="$d/bin:$PATH"
containerd --version
runc --version
containerd --config config.toml >"$d/containerd.log" 2>&1 & cpid=$!
for i in $(seq 50); do [ -S "$run/containerd.sock" ] && break; sleep 0.2; done
ctr() { command ctr -a "$run/containerd.sock" -n k8s.io "$@"; }
ctr images import img/pause.tar
ctr images import img/busybox.tar
ctr images ls
ctr images check
ctr snapshots --snapshotter overlayfs ls
ctr run --rm kubesalt.lab/busybox:1.35 lab-busybox \
  sh -c 'echo "busybox ran: $(uname -sm), $(ls /bin | wc -l) entries in /bin"'
ctr run --rm k8s.gcr.io/pause:3.2 lab-pause /pause -v
echo IMAGES-OK
"""


def check_images(node_id, manifest):
    env = {
        "MIRROR": MIRROR_URL,
        "CONTAINERD": manifest["files"]["containerd"]["path"],
        "RUNC": manifest["files"]["runc"]["path"],
    }
    for img in manifest["images"]:
        key = "PAUSE" if "pause" in img["name"] else "BUSYBOX"
        env[key], env[key + "_SHA"] = img["path"], img["sha256"]
    script = "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()) + CHECK_SCRIPT
    res = nsenter(node_id, ["bash", "-c", script], check=False, timeout=300)
    out = (res.stdout or "") + (res.stderr or "")
    if res.returncode != 0 or "IMAGES-OK" not in out:
        die(f"image check on {node_id} failed:\n{out[-4000:]}")
    return out
