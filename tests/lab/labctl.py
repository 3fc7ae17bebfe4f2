#!/usr/bin/env python3
"""kubesalt lab driver: real nodes (systemd-nspawn, systemd as PID 1) on a private host bridge, a local artifact
mirror, a salt-master on the host, and `salt-run state.orchestrate k8s.cluster`. Called by tests/lab/lab.sh and the
Makefile's lab targets; standard library only (the host's python3).

    lab.sh up | down | status
    lab.sh node-stop|node-start|node-restart <id>     stop/boot one node again (its disk survives)
    lab.sh add-worker <id>                            a new worker (e.g. worker03): pillar inventory + boot
    lab.sh exec <id> <cmd...>                         run a command inside a node (nsenter)
    lab.sh shell <id>                                 a shell inside a node
    lab.sh salt <args...> / salt-run <args...> / salt-key <args...>   the lab master's CLIs
    lab.sh check-images [<id>]                        import + run the OCI images with containerd's ctr in a node
    lab.sh orchestrate                                run the orchestration phase again

Environment: LAB_MASTERS (1), LAB_WORKERS (2) -- only when a lab is created; LAB_ORCHESTRATE=0 skips the
orchestration; LAB_SALT_TREE (this checkout: whose formulas/_modules/_states the master serves); LAB_STATE (/var/lib/kubesalt-lab); KUBESALT_CACHE (/var/cache/kubesalt); VENV (<repo>/.venv).

Nothing is routed or NATed: the bridge kslab0 (10.240.0.1/24) only joins the nodes' veths; the host does not forward
(net.ipv4.ip_forward is left as it is, and the lab refuses to start if it is 1).

Layout: state of a running lab in $LAB_STATE (lab.json inventory, pillar/, master/ = `salt -c` dir, keys/,
nodes/<id>/{upper,work,rootfs,containerd}, logs/, admin.conf); builds cached in $KUBESALT_CACHE/lab/{debs,mirror,
rootfs,checks} keyed by their inputs. Each node = an overlay (upper dir per node) over the cached bookworm base, its
/var/lib/containerd a bind mount of a plain host directory (containerd's overlayfs snapshotter cannot use an
overlayfs upper dir). Node boot convergence: `startup_states: highstate` (minion.d/kubesalt-lab-boot.conf) -- given
to a new lab's nodes after their first `up`, to nodes from add-worker at once (see boot_converge_on).
"""

import contextlib
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(HERE, "build")
FILES = os.path.join(HERE, "files")
STATE = os.environ.get("LAB_STATE", "/var/lib/kubesalt-lab")
CACHE = os.environ.get("KUBESALT_CACHE", "/var/cache/kubesalt")
VENV = os.environ.get("VENV") or os.path.join(REPO, ".venv")
# The tree whose formulas/, _modules/ and _states/ the lab master serves: this checkout, or another one (e.g. a
# `git worktree` of a commit) to run the lab against code that is not in the working copy.
SALT_TREE = os.path.abspath(os.environ.get("LAB_SALT_TREE") or REPO)
K8S_VERSION = "1.20.2"

BRIDGE = "kslab0"
NET = ipaddress.ip_network("10.240.0.0/24")
HOST_IP = "10.240.0.1"
MIRROR_PORT = 8080
MIRROR_URL = f"http://{HOST_IP}:{MIRROR_PORT}"
MASTER_CONF = os.path.join(STATE, "master")           # salt -c <this>
MASTER_PKI = os.path.join(MASTER_CONF, "etc/salt/pki/master")
PILLAR_DIR = os.path.join(STATE, "pillar")
NODES_DIR = os.path.join(STATE, "nodes")
LAB_JSON = os.path.join(STATE, "lab.json")
PEER_RULES_FALLBACK = {".*": ["k8s_pki.sign_remote", "k8s_pki.fetch_secret_remote"]}
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NSPAWN_FILTER = "@keyring @privileged @mount @module bpf"
ID_RE = re.compile(r"^(master|worker)(\d\d)$")

T0 = time.monotonic()
TIMINGS = []


# ------------------------------------------------------------------------------------------------------------------
# output, processes
# ------------------------------------------------------------------------------------------------------------------
def elapsed():
    s = int(time.monotonic() - T0)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def say(msg):
    print(f"[lab {elapsed()}] {msg}", flush=True)


def die(msg):
    print(f"[lab {elapsed()}] ERROR: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


@contextlib.contextmanager
def phase(name):
    say(f"{name} ...")
    t = time.monotonic()
    yield
    dt = time.monotonic() - t
    TIMINGS.append((name, dt))
    say(f"{name}: done ({dt:.1f}s)")


def run(cmd, check=True, capture=False, env=None, timeout=None, quiet=False, **kw):
    if isinstance(cmd, str):
        cmd = ["bash", "-c", cmd]
    res = subprocess.run(cmd, check=False, text=True, env=env, timeout=timeout,
                         stdout=subprocess.PIPE if capture or quiet else None,
                         stderr=subprocess.PIPE if capture or quiet else None, **kw)
    if check and res.returncode != 0:
        detail = ((res.stdout or "") + (res.stderr or ""))[-3000:] if (capture or quiet) else ""
        die(f"command failed ({res.returncode}): {' '.join(shlex.quote(c) for c in cmd)}\n{detail}")
    return res


def alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def read_pid(path):
    try:
        with open(path) as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_for(pred, timeout, interval=0.5, what="condition"):
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > end:
            die(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def read(path, default=None):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return default


def sha(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
    return h.hexdigest()[:12]


# ------------------------------------------------------------------------------------------------------------------
# lab inventory (lab.json)
# ------------------------------------------------------------------------------------------------------------------
def node_ip(node_id):
    role, num = ID_RE.match(node_id).groups()
    return str(NET.network_address + (10 if role == "master" else 20) + int(num))


def node_entry(node_id):
    m = ID_RE.match(node_id)
    if not m:
        die(f"node id {node_id!r}: expected masterNN or workerNN (e.g. worker03)")
    role = m.group(1)
    return {"grain_roles": [role], "roles": ["master", "etcd"] if role == "master" else ["worker"],
            "ip": node_ip(node_id)}


def load_lab():
    """The lab's inventory and settings; a lab keeps the tree it was created with unless LAB_SALT_TREE is given."""
    global SALT_TREE
    data = read(LAB_JSON)
    lab = json.loads(data) if data else None
    if lab is not None:
        if os.environ.get("LAB_SALT_TREE") or not lab.get("salt_tree"):
            lab["salt_tree"] = SALT_TREE
        SALT_TREE = lab["salt_tree"]
    return lab


def save_lab(lab):
    write(LAB_JSON, json.dumps(lab, indent=1, sort_keys=True) + "\n")


def new_lab():
    masters = int(os.environ.get("LAB_MASTERS", "1"))
    workers = int(os.environ.get("LAB_WORKERS", "2"))
    if not 1 <= masters <= 9 or not 0 <= workers <= 89:
        die("LAB_MASTERS must be 1..9 and LAB_WORKERS 0..89")
    nodes = {f"master{i:02d}": node_entry(f"master{i:02d}") for i in range(1, masters + 1)}
    nodes.update({f"worker{i:02d}": node_entry(f"worker{i:02d}") for i in range(1, workers + 1)})
    return {"nodes": nodes, "created": datetime.datetime.now().isoformat(timespec="seconds"), "salt_tree": SALT_TREE}


def node_dir(node_id, *rest):
    return os.path.join(NODES_DIR, node_id, *rest)


# ------------------------------------------------------------------------------------------------------------------
# phases: host tools, builds
# ------------------------------------------------------------------------------------------------------------------
def host_tools():
    need = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "gcc": "gcc",
            "dpkg-deb": "dpkg", "nsenter": "util-linux", "ip": "iproute2", "strip": "binutils"}
    missing = sorted({pkg for cmd, pkg in need.items() if not shutil.which(cmd)})
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/libc.a"):
        missing.append("libc6-dev")
    if missing:
        say(f"apt-get install {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing, check=False, quiet=True,
               env=env).returncode != 0:
            run(["apt-get", "update", "-qq"], env=env, quiet=True)
            run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing, env=env, quiet=True)
    # the project's venv (salt-master runs from it) and the wheel cache the nodes' salt-minion is installed from
    run(["bash", os.path.join(REPO, "tests/bootstrap.sh")], env=dict(os.environ, VENV=VENV))


def wheel_dir():
    with open(os.path.join(REPO, "tests/requirements.txt"), "rb") as fh:
        key = hashlib.sha256(fh.read()).hexdigest()[:12]   # same key as tests/bootstrap.sh
    return os.path.join(CACHE, "wheels", key)


def build_kubernetes():
    run(["bash", os.path.join(BUILD, "kubernetes.sh")])


def build_artifacts():
    res = run(["/usr/bin/python3", os.path.join(BUILD, "artifacts.py"), "--cache", CACHE,
               "--kubernetes", K8S_VERSION], capture=True)
    sys.stderr.write(res.stderr)
    with open(res.stdout.strip().splitlines()[-1]) as fh:
        return json.load(fh)


def rootfs_key():
    parts = [read(os.path.join(BUILD, "rootfs.sh"))]
    for name in sorted(os.listdir(FILES)):
        parts.append(name + "\0" + read(os.path.join(FILES, name)))
    parts.append(wheel_dir())
    return "bookworm-" + sha(*parts)


def build_rootfs():
    out = os.path.join(CACHE, "lab", "rootfs", rootfs_key())
    run(["bash", os.path.join(BUILD, "rootfs.sh"), out, wheel_dir()])
    return out


# ------------------------------------------------------------------------------------------------------------------
# network
# ------------------------------------------------------------------------------------------------------------------
def link_exists(name):
    return run(["ip", "link", "show", "dev", name], check=False, quiet=True).returncode == 0


def bridge_up():
    if read("/proc/sys/net/ipv4/ip_forward", "0").strip() != "0":
        die("net.ipv4.ip_forward is 1 on this host: the lab would route node traffic to other interfaces. "
            "It does not change that setting itself.")
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
HOST_SYSCTLS = ["kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
                "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"]
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


# ------------------------------------------------------------------------------------------------------------------
# artifact mirror (python http.server on the bridge address)
# ------------------------------------------------------------------------------------------------------------------
MIRROR_PID = os.path.join(STATE, "mirror.pid")


def mirror_running():
    pid = read_pid(MIRROR_PID)
    return pid if alive(pid) and "http.server" in cmdline(pid) else 0


def mirror_start(www):
    pid = mirror_running()
    if pid and read(os.path.join(STATE, "mirror.dir")) == www:
        return pid
    mirror_stop()
    log = open(os.path.join(STATE, "mirror.log"), "a")
    proc = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", str(MIRROR_PORT), "--bind", HOST_IP,
                             "--directory", www], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    write(MIRROR_PID, f"{proc.pid}\n")
    write(os.path.join(STATE, "mirror.dir"), www)

    def answers():
        try:
            with urllib.request.urlopen(f"{MIRROR_URL}/", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False
    wait_for(answers, 20, what=f"the mirror on {MIRROR_URL}")
    return proc.pid


def mirror_stop():
    pid = mirror_running()
    if pid:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), 10, what="the mirror to stop")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(MIRROR_PID)


def mirror_check(manifest):
    """GET every served file once from the host side: same bytes as the digests in the pillar."""
    items = [(f["path"], f["sha256"]) for f in manifest["files"].values()]
    items += [(i["path"], i["sha256"]) for i in manifest["images"]]
    for path, digest in items:
        h = hashlib.sha256()
        with urllib.request.urlopen(f"{MIRROR_URL}/{path}", timeout=30) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != digest:
            die(f"mirror serves {path} with sha256 {h.hexdigest()}, expected {digest}")
    return len(items)


# ------------------------------------------------------------------------------------------------------------------
# pillar
# ------------------------------------------------------------------------------------------------------------------
def pillar(lab, manifest):
    pins = {}
    for component, f in sorted(manifest["files"].items()):
        pins.setdefault(component, {})[f["version"]] = {"amd64": {"sha256": f["sha256"]}}
    k8s = {
        "versions": manifest["versions"],
        "nodes": {nid: {"roles": n["roles"], "ip": n["ip"]} for nid, n in sorted(lab["nodes"].items())},
        "network": {"mode": "routes"},
        "artifacts": {"mirror": MIRROR_URL, "pins": pins},
        "container_runtime": {
            "crictl": False,
            "sandbox_image": "k8s.gcr.io/pause:3.2",
            "images": [{"name": i["name"], "url": i["url"], "sha256": i["sha256"]} for i in manifest["images"]],
            # The nodes cannot lower oom_score_adj (no CAP_SYS_RESOURCE in this VM's bounding set): without this,
            # runc fails every pod sandbox ("can't get final child's PID from pipe"). Lab-only, through the
            # formula's config.toml merge key.
            "config": {"plugins": {"io.containerd.grpc.v1.cri": {"restrict_oom_score_adj": True}}},
        },
        "addons": {"coredns": {"wait_ready": False}},
        # /proc/sys/net/netfilter/nf_conntrack_max cannot be written from a node (a host-wide setting): kube-proxy
        # must leave the conntrack table size alone (maxPerCore 0) or it exits. Lab-only, through the formula's
        # KubeProxyConfiguration merge key.
        "kube_proxy": {"config": {"conntrack": {"maxPerCore": 0}}},
    }
    return k8s


def write_pillar(lab, manifest):
    """Return True when the pillar changed."""
    k8s = pillar(lab, manifest)
    body = textwrap.dedent(f"""\
        # Written by tests/lab/labctl.py -- the kubesalt lab's pillar. Every digest is the sha256 of the file the lab
        # mirror ({MIRROR_URL}) serves; image URLs are upstream-shaped and reach the mirror through
        # k8s:artifacts:mirror like every other artifact. JSON is YAML.
        """) + "k8s: " + json.dumps(k8s, indent=2, sort_keys=True) + "\n"
    old = read(os.path.join(PILLAR_DIR, "k8s.sls"))
    write(os.path.join(PILLAR_DIR, "top.sls"), "base:\n  '*':\n    - k8s\n")
    write(os.path.join(PILLAR_DIR, "k8s.sls"), body)
    return old != body


# ------------------------------------------------------------------------------------------------------------------
# salt-master
# ------------------------------------------------------------------------------------------------------------------
def salt_bin(name):
    return os.path.join(VENV, "bin", name)


def master_pid():
    pid = read_pid(os.path.join(MASTER_CONF, "var/run/salt-master.pid"))
    return pid if alive(pid) and "salt-master" in cmdline(pid) else 0


def readme_master_section(key):
    """A top-level section of the served tree's README master config (`/etc/salt/master.d/kubesalt.conf`), so the
    lab follows the documentation as it changes. Parses the simple two-level form the README uses -- names, then
    `- item` lines or `key: N` / `key: [a, b]` lines -- without needing PyYAML on the host; None when absent."""
    text = read(os.path.join(SALT_TREE, "README.md"), "")
    m = re.search(rf"^{re.escape(key)}:\n((?:  .*\n)+)", text, re.M)
    if not m:
        return None
    section, current = {}, None
    for line in m.group(1).splitlines():
        if not line.startswith("    "):
            current = line.strip().rstrip(":")
            section[current] = None
            continue
        item = line.strip()
        if item.startswith("- "):
            section[current] = (section[current] or []) + [item[2:].split("#")[0].strip()]
            continue
        name, _, value = item.partition(":")
        value = value.split("#")[0].strip()
        if value.startswith("["):
            value = [v.strip().strip("'\"") for v in value.strip("[]").split(",") if v.strip()]
        else:
            value = int(value)
        section[current] = {**(section[current] or {}), name: value}
    return section


def shipped_master_section(key):
    """A top-level section of the master configuration users install (conf/master.d/kubesalt.conf of the served
    tree), read with PyYAML where the host has it (Debian's python3-yaml); None otherwise or when absent."""
    try:
        import yaml  # noqa: PLC0415 -- optional on the host
    except ImportError:
        return None
    text = read(os.path.join(SALT_TREE, "conf", "master.d", "kubesalt.conf"), "")
    return (yaml.safe_load(text) or {}).get(key) if text else None


def peer_rules():
    """The shipped peer rules (conf/master.d/kubesalt.conf), else the README's `peer:` block."""
    return shipped_master_section("peer") or readme_master_section("peer") or PEER_RULES_FALLBACK


def worker_pools():
    """The shipped worker pools (a pool of its own for `publish`), else the README's; None (Salt's default)."""
    return shipped_master_section("worker_pools") or readme_master_section("worker_pools")


def reactors():
    """The shipped reactor (certificate renewal: salt/beacon/*/k8s_certs/due -> salt://k8s/reactor/renew.sls)."""
    return shipped_master_section("reactor")


def master_config():
    ext = os.path.join(STATE, "ext")
    os.makedirs(ext, exist_ok=True)
    for name in ("_modules", "_states"):
        link = os.path.join(ext, name)
        target = os.readlink(link) if os.path.islink(link) else None
        if target != os.path.join(SALT_TREE, name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            os.symlink(os.path.join(SALT_TREE, name), link)
    conf = {
        "id": "kubesalt-lab-master",
        "root_dir": MASTER_CONF,
        "interface": HOST_IP,
        "publish_port": 4505,
        "ret_port": 4506,
        "user": "root",
        "file_roots": {"base": [os.path.join(SALT_TREE, "formulas"), ext]},
        "pillar_roots": {"base": [PILLAR_DIR]},
        "peer": peer_rules(),
        "open_mode": False,
        "auto_accept": False,
        "fileserver_list_cache_time": 0,
        "timeout": 20,
        "gather_job_timeout": 30,
        "log_level_logfile": "info",
    }
    pools = worker_pools()
    if pools:
        conf["worker_pools"] = pools
    reactor = reactors()
    if reactor:
        conf["reactor"] = reactor
    return ("# Written by tests/lab/labctl.py: the kubesalt lab's salt-master (salt -c " + MASTER_CONF + ").\n"
            + json.dumps(conf, indent=2, sort_keys=True) + "\n")


def gen_keys(name, directory):
    """A minion keypair made by `salt-key --gen-keys` (in a scratch dir: salt-key 3008 also drops a keypair for its
    own id there, and its final fingerprint print fails with a traceback although the keys are written)."""
    pem, pub = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.pub")
    if not (os.path.exists(pem) and os.path.exists(pub)):
        os.makedirs(directory, exist_ok=True)
        scratch = os.path.join(directory, f".gen-{name}")
        shutil.rmtree(scratch, ignore_errors=True)
        os.makedirs(scratch)
        res = run([salt_bin("salt-key"), "-c", MASTER_CONF, f"--gen-keys={name}", f"--gen-keys-dir={scratch}"],
                  check=False, quiet=True)
        for src, dest in ((f"{name}.pem", pem), (f"{name}.pub", pub)):
            if not os.path.exists(os.path.join(scratch, src)):
                die(f"salt-key --gen-keys={name} wrote no {src}: {res.stdout}{res.stderr}")
            os.replace(os.path.join(scratch, src), dest)
        shutil.rmtree(scratch)
    return pem, pub


def master_keys(lab):
    """Every minion's keypair, generated here; their public keys accepted up front (no auto_accept). The master
    makes its own keypair at first start (<id>.pem, master.pem -> it); the lab gives its public key to the nodes."""
    os.makedirs(os.path.join(MASTER_PKI, "minions"), exist_ok=True)
    for nid in lab["nodes"]:
        _, pub = gen_keys(nid, os.path.join(STATE, "keys"))
        dest = os.path.join(MASTER_PKI, "minions", nid)
        if read(dest) != read(pub):
            shutil.copyfile(pub, dest)


def master_start(lab):
    conf = master_config()
    conf_path = os.path.join(MASTER_CONF, "master")
    changed = read(conf_path) != conf
    write(conf_path, conf)
    master_keys(lab)
    pid = master_pid()
    if pid and not changed:
        return pid
    if pid:
        say("salt-master configuration changed: restarting it")
        master_stop()
    run([salt_bin("salt-master"), "-c", MASTER_CONF, "-d"])

    def listening():
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex((HOST_IP, 4506)) == 0 and master_pid()
    wait_for(listening, 60, what="the salt-master on 4506")
    wait_for(lambda: os.path.exists(os.path.join(MASTER_PKI, "master.pub")), 30, what="the master's key")
    return master_pid()


def master_stop():
    pid = master_pid()
    if pid:
        os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(SystemExit):
            wait_for(lambda: not alive(pid), 20, what="salt-master to stop")
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    # the master's worker processes are in its process group
    for proc in _procs_matching(f"-c {MASTER_CONF}"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc, signal.SIGKILL)


def _procs_matching(text):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and text in cmdline(int(entry)) and int(entry) != os.getpid():
            out.append(int(entry))
    return out


def salt(*args, timeout=None, check=True, capture=True):
    return run([salt_bin("salt"), "-c", MASTER_CONF] + list(args), check=check, capture=capture, timeout=timeout)


def salt_json(*args, timeout=None):
    res = salt("--out=json", "--static", *args, timeout=timeout, check=False)
    try:
        return json.loads(res.stdout or "{}")
    except ValueError:
        return {}


# ------------------------------------------------------------------------------------------------------------------
# nodes
# ------------------------------------------------------------------------------------------------------------------
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


def nsenter(node_id, argv, check=True, capture=True, timeout=None, input=None):
    pid = init_pid(node_id)
    if not pid:
        die(f"{node_id} is not running")
    env = {"PATH": NODE_PATH, "HOME": "/root", "TERM": os.environ.get("TERM", "dumb"), "LANG": "C.UTF-8"}
    return run(["nsenter", "-t", str(pid), "-a"] + list(argv), check=check, capture=capture, env=env,
               timeout=timeout, input=input)


def mounted(path):
    return run(["mountpoint", "-q", path], check=False).returncode == 0


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
    write(R("/etc/salt/minion.d/kubesalt-lab.conf"), textwrap.dedent(f"""\
        # kubesalt lab minion. Boot convergence (startup_states: highstate) is in kubesalt-lab-boot.conf.
        id: {node_id}
        master: {HOST_IP}
        acceptance_wait_time: 2
        random_reauth_delay: 0
        auth_tries: 10
        log_level_logfile: info
        """))
    if node.get("boot_converge"):
        boot_converge_on(merged)
    write(R("/etc/salt/grains"), "# kubesalt lab: targeting only (authorization comes from k8s:nodes)\nrole:\n"
          + "".join(f"  - {r}\n" for r in node["grain_roles"]))
    pem, pub = gen_keys(node_id, os.path.join(STATE, "keys"))
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
    write(os.path.join(merged, "etc/salt/minion.d/kubesalt-lab-boot.conf"), textwrap.dedent("""\
        # kubesalt lab: converge at every minion start (README "Node boot").
        startup_states: highstate
        """))


def write_hosts(merged, lab):
    lines = ["# kubesalt lab (written by tests/lab/labctl.py)", "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback", f"{HOST_IP}\tkslab-host"]
    lines += [f"{n['ip']}\t{nid}" for nid, n in sorted(lab["nodes"].items(), key=lambda kv: ipaddress.ip_address(
        kv[1]["ip"]))]
    write(os.path.join(merged, "etc/hosts"), "\n".join(lines) + "\n")


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


def node_cgroups(node_id):
    """A cgroup of its own for the node in every hierarchy, for systemd-nspawn to start in. Without it every node's
    systemd shares one cgroup root (nspawn --keep-unit puts the payload under the caller's cgroup), so the nodes'
    system.slice and kubepods.slice are the same directories and one node's systemd or kubelet removes cgroups
    another node's containers live in (seen: 'runc exec: ... cgroup.procs: no such file or directory',
    units failing with status 219/CGROUP)."""
    dirs = []
    for base in node_cgroup_dirs(node_id):
        node_cgroups_remove([base])     # what a previous boot of this node left, if empty
        try:
            os.makedirs(base, exist_ok=True)
            # cpuset: a new v1 cgroup starts with no CPUs/memory nodes; take the parent's, top-down
            for d in (os.path.dirname(base), base):
                for name in ("cpuset.cpus", "cpuset.mems"):
                    if os.path.exists(os.path.join(d, name)) and not read(os.path.join(d, name), "").strip():
                        with open(os.path.join(d, name), "w") as fh:   # cgroupfs: no temp file + rename
                            fh.write(read(os.path.join(os.path.dirname(d), name)))
            dirs.append(base)
        except OSError as exc:
            say(f"{node_id}: no cgroup of its own in {base} ({exc}); it shares the host's")
    return dirs


def node_cgroups_remove(dirs):
    """Remove the given cgroups and their empty children (os.walk bottom-up); busy ones stay."""
    for base in dirs:
        for root, _, _ in os.walk(base, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(root)


def node_boot(node_id, lab, rootfs):
    if nspawn_pid(node_id):
        return
    node_prepare(node_id, lab, rootfs)
    veth = f"ve-{node_id}"[:15]
    if link_exists(veth):   # left over from a killed node
        run(["ip", "link", "del", veth], check=False)
    log = open(node_dir(node_id, "nspawn.log"), "a")
    log.write(f"\n===== boot {datetime.datetime.now().isoformat(timespec='seconds')}\n")
    log.flush()
    env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="1")
    argv = ["systemd-nspawn", "--register=no", "--keep-unit", "-D", node_dir(node_id, "rootfs"), "-M", node_id,
            "--boot", "--capability=all", f"--system-call-filter={NSPAWN_FILTER}", "--bind=/dev/kmsg",
            "--private-network", "--network-veth", "--console=passive", "--resolv-conf=off",
            f"--bind={node_dir(node_id, 'containerd')}:/var/lib/containerd"]
    cgroups = node_cgroups(node_id)

    def enter_cgroups():
        for base in cgroups:
            with contextlib.suppress(OSError), open(os.path.join(base, "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
                            preexec_fn=enter_cgroups)
    write(node_dir(node_id, "nspawn.pid"), f"{proc.pid}\n")
    wait_for(lambda: link_exists(veth) or (proc.poll() is not None and die(
        f"{node_id}: systemd-nspawn exited ({proc.returncode}); see {node_dir(node_id, 'nspawn.log')}")),
        30, interval=0.2, what=f"{veth}")
    run(["ip", "link", "set", veth, "master", BRIDGE, "up"])
    wait_for(lambda: init_pid(node_id), 30, what=f"{node_id}'s systemd")


def node_wait_booted(node_id, timeout=120):
    def booted():
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
            os.kill(init, signal.SIGKILL)   # PID 1 of the node's PID namespace: takes the whole node with it
        wait_for(lambda: not alive(pid) and not (init and alive(init)), 20, what=f"{node_id} to stop")
    merged = node_dir(node_id, "rootfs")
    if os.path.isdir(merged) and mounted(merged):
        if run(["umount", merged], check=False, quiet=True).returncode != 0:
            run(["umount", "-l", merged])
    veth = f"ve-{node_id}"[:15]
    if link_exists(veth):
        run(["ip", "link", "del", veth], check=False, quiet=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(node_dir(node_id, "nspawn.pid"))
    node_cgroups_remove(node_cgroup_dirs(node_id))


# ------------------------------------------------------------------------------------------------------------------
# minions
# ------------------------------------------------------------------------------------------------------------------
def wait_minions(ids, timeout=180):
    pending = set(ids)
    end = time.monotonic() + timeout
    while pending:
        ret = salt_json("-L", ",".join(sorted(pending)), "test.ping", "--timeout=10", timeout=60)
        pending -= {m for m, v in ret.items() if v is True}
        if pending and time.monotonic() > end:
            die(f"minions not answering test.ping after {timeout}s: {', '.join(sorted(pending))}")
        if pending:
            time.sleep(2)


def wait_idle(ids, timeout=900):
    """Wait until no job runs on the minions (the boot highstate from startup_states)."""
    end = time.monotonic() + timeout
    last = None
    while True:
        ret = salt_json("-L", ",".join(sorted(ids)), "saltutil.running", "--timeout=15", timeout=90)
        busy = {m: [j.get("fun") for j in v] for m, v in ret.items() if isinstance(v, list) and v}
        missing = set(ids) - set(ret)
        if not busy and not missing:
            return
        desc = ", ".join(f"{m}: {'/'.join(f)}" for m, f in sorted(busy.items())) or "no answer from " + ",".join(
            sorted(missing))
        if desc != last:
            say(f"  waiting for running jobs: {desc}")
            last = desc
        if time.monotonic() > end:
            die(f"minions still busy after {timeout}s: {desc}")
        time.sleep(3)


def jid_now():
    return datetime.datetime.now().strftime("%Y%m%d%H%M%S%f")


def boot_highstate_report(ids, since="0"):
    """Summarize each minion's latest boot highstate (jid >= since) from the master's job cache (what startup_states
    did)."""
    jobs = run([salt_bin("salt-run"), "-c", MASTER_CONF, "--out=json", "jobs.list_jobs",
                "search_function=state.highstate"], capture=True, check=False).stdout
    try:
        jobs = json.loads(jobs or "{}")
    except ValueError:
        return
    latest = {}
    for jid, job in sorted(jobs.items()):
        targets = job.get("Target")
        if isinstance(targets, str) and targets in ids and jid >= since:
            latest[targets] = jid
    for mid, jid in sorted(latest.items()):
        ret = run([salt_bin("salt-run"), "-c", MASTER_CONF, "--out=json", "jobs.lookup_jid", jid], capture=True,
                  check=False).stdout
        with contextlib.suppress(ValueError, AttributeError):
            data = json.loads(ret or "{}").get(mid)
            if isinstance(data, dict):
                failed = sum(1 for s in data.values() if isinstance(s, dict) and s.get("result") is False)
                say(f"  boot highstate {mid} ({jid}): {len(data)} states, {failed} failed")
            elif data is not None:
                say(f"  boot highstate {mid} ({jid}): {str(data)[:200]}")


# ------------------------------------------------------------------------------------------------------------------
# image check (ctr inside a node)
# ------------------------------------------------------------------------------------------------------------------
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
echo "$CONTAINERD_SHA  -" > /dev/null
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
containerd --config config.toml >"$d/containerd.log" 2>&1 & cpid=$!
for i in $(seq 50); do [ -S "$run/containerd.sock" ] && break; sleep 0.2; done
ctr() { command ctr -a "$run/containerd.sock" -n k8s.io "$@"; }
ctr images import img/pause.tar
ctr images import img/busybox.tar
ctr images ls
ctr images check
ctr snapshots --snapshotter overlayfs ls
ctr run --rm kubesalt.lab/busybox:1.35 lab-busybox sh -c 'echo "busybox ran: $(uname -sm), $(ls /bin | wc -l) entries in /bin"'
ctr run --rm k8s.gcr.io/pause:3.2 lab-pause /pause -v
echo IMAGES-OK
"""


def check_images(node_id, manifest):
    env = {"MIRROR": MIRROR_URL, "CONTAINERD": manifest["files"]["containerd"]["path"],
           "RUNC": manifest["files"]["runc"]["path"], "CONTAINERD_SHA": manifest["files"]["containerd"]["sha256"]}
    for img in manifest["images"]:
        key = "PAUSE" if "pause" in img["name"] else "BUSYBOX"
        env[key], env[key + "_SHA"] = img["path"], img["sha256"]
    script = "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()) + CHECK_SCRIPT
    res = nsenter(node_id, ["bash", "-c", script], check=False, timeout=300)
    out = (res.stdout or "") + (res.stderr or "")
    if res.returncode != 0 or "IMAGES-OK" not in out:
        die(f"image check on {node_id} failed:\n{out[-4000:]}")
    return out


# ------------------------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def lock():
    os.makedirs(STATE, exist_ok=True)
    with open(os.path.join(STATE, ".lock"), "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            die(f"another lab command holds {STATE}/.lock")
        yield


def ensure_infra(lab):
    """Everything but the nodes, each step idempotent. Returns (manifest, rootfs)."""
    with phase("host tools + project venv"):
        host_tools()
    with phase(f"kubernetes {K8S_VERSION} binaries"):
        build_kubernetes()
    with phase("artifacts + OCI images"):
        manifest = build_artifacts()
    with phase("node base image"):
        rootfs = build_rootfs()
    with phase(f"network ({BRIDGE} {HOST_IP}/24)"):
        bridge_up()
    with phase(f"artifact mirror ({MIRROR_URL})"):
        mirror_start(manifest["mirror_dir"])
        say(f"  {mirror_check(manifest)} files served with the pinned digests")
    with phase("pillar + salt-master"):
        changed = write_pillar(lab, manifest)
        master_start(lab)
        save_lab(lab)
    return manifest, rootfs, changed


def cmd_up(args):
    with lock():
        lab = load_lab()
        if lab is None:
            lab = new_lab()
            say(f"new lab: {', '.join(sorted(lab['nodes']))}")
        else:
            say(f"existing lab ({LAB_JSON}): {', '.join(sorted(lab['nodes']))}, salt tree {SALT_TREE} "
                "(LAB_MASTERS/LAB_WORKERS only apply to a new lab; `make lab-down` first to change them)")
        manifest, rootfs, pillar_changed = ensure_infra(lab)
        ids = sorted(lab["nodes"])
        host_sysctls_record()
        since = jid_now()
        with phase(f"nodes ({len(ids)})"):
            started = [n for n in ids if not nspawn_pid(n)]
            for n in started:
                node_boot(n, lab, rootfs)
            save_lab(lab)
            for n in ids:
                node_wait_booted(n)
        with phase("minions (test.ping; boot highstate of nodes that converge at boot)"):
            wait_minions(ids)
            if pillar_changed and len(started) < len(ids):
                salt("*", "saltutil.refresh_pillar", check=False)
            wait_idle(ids)
            converging = [n for n in started if lab["nodes"][n].get("boot_converge")]
            if converging:
                boot_highstate_report(converging, since)
        stamp = os.path.join(CACHE, "lab", "checks", f"images-{manifest['key']}-{os.path.basename(rootfs)}.ok")
        if not os.path.exists(stamp):
            target = next((n for n in ids if n.startswith("worker")), ids[0])
            with phase(f"image check (ctr import + run in {target}, once per build)"):
                out = check_images(target, manifest)
                write(stamp, out)
                for line in out.splitlines():
                    if line.startswith(("busybox ran", "pause.c", "REF", "k8s.gcr.io", "kubesalt.lab")):
                        say("  " + line)
        ok, log = True, None
        if os.environ.get("LAB_ORCHESTRATE", "1") != "0":
            ok, log = orchestrate(lab)
        else:
            say("orchestrate: skipped (LAB_ORCHESTRATE=0)")
        for n in ids:
            if not lab["nodes"][n].get("boot_converge") and mounted(node_dir(n, "rootfs")):
                boot_converge_on(node_dir(n, "rootfs"))
                lab["nodes"][n]["boot_converge"] = True
        save_lab(lab)
        copy_admin_conf(lab)
        summary(lab, manifest)
        if not ok:
            die(f"the orchestration failed; see {log}")


def orchestrate(lab):
    logs = os.path.join(STATE, "logs")
    os.makedirs(logs, exist_ok=True)
    log = os.path.join(logs, f"orchestrate-{datetime.datetime.now():%Y%m%d-%H%M%S}.log")
    # salt-run k8s.converge (the formula's runner, README "Operating the cluster"): state.orchestrate k8s.cluster
    # with each step's start and end shown as they happen, then a table of the steps' times. The runner and its
    # outputter come from the served tree (formulas/_runners, formulas/_output).
    run([salt_bin("salt-run"), "-c", MASTER_CONF, "saltutil.sync_all"], check=False, quiet=True)
    cmd = [salt_bin("salt-run"), "-c", MASTER_CONF, "k8s.converge"]
    with phase("orchestrate: " + " ".join(["salt-run", "-c", MASTER_CONF, "k8s.converge"])):
        with open(log, "w") as fh, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                    text=True) as proc:
            for line in proc.stdout:
                fh.write(line)
                if line.strip() and not line.startswith("unclosed "):   # salt-run 3008 teardown noise
                    say("  " + line.rstrip())
            rc = proc.wait()
        text = read(log, "")
        say(f"  salt-run exit code {rc}; full output: {log}")
        ok = rc == 0
        if not ok:
            for step, comment in re.findall(r"^ {10}ID: (.*)\n {4}Function: .*\n {6}Result: False\n {5}Comment: (.*)",
                                            text, re.M)[:10]:
                say(f"  failed step: {step}: {comment}")
            for fid, comment in re.findall(r"^ +ID: (.*)\n +Function: .*\n(?: +Name: .*\n)? +Result: False\n"
                                           r" +Comment: (.*)", text, re.M)[:10]:
                say(f"    failed state: {fid}: {comment}")
    return ok, log


def copy_admin_conf(lab):
    """Copy the CA minion's admin kubeconfig to the host as a self-contained file (0600): the formula's file names
    the certificates by path inside the node, so they are embedded (kubectl config view --flatten on a copy whose
    paths point into the node's root)."""
    first = sorted(n for n, v in lab["nodes"].items() if "master" in v["roles"])[0]
    root = node_dir(first, "rootfs")
    src = os.path.join(root, "etc/kubernetes/admin.conf")
    dest = os.path.join(STATE, "admin.conf")
    if not (os.path.exists(src) and mounted(root)):
        return None
    text = read(src)
    rooted = re.sub(r"^(\s*(?:certificate-authority|client-certificate|client-key):\s*)(/\S+)",
                    lambda m: m.group(1) + root + m.group(2), text, flags=re.M)
    tmp = dest + ".in"
    write(tmp, rooted, 0o600)
    kubectl = os.path.join(CACHE, "kubernetes", K8S_VERSION, "bin", "kubectl")
    res = run([kubectl, "config", "view", "--raw", "--flatten", f"--kubeconfig={tmp}"], check=False, capture=True)
    os.unlink(tmp)
    if res.returncode != 0:
        say(f"  admin.conf from {first} not copied: {res.stderr.strip()}")
        return None
    write(dest, res.stdout, 0o600)
    return dest


def summary(lab, manifest):
    say("summary")
    print(f"  nodes ({BRIDGE}, {NET}):")
    for nid, n in sorted(lab["nodes"].items()):
        state = "up" if init_pid(nid) else "down"
        print(f"    {nid:10s} {n['ip']:13s} roles={','.join(n['roles']):11s} {state}")
    v = manifest["versions"]
    print("  versions: " + ", ".join(f"{k} {v[k]}" for k in sorted(v)) + "; salt 3008.3; Debian bookworm nodes")
    print(f"  mirror: {MIRROR_URL} -> {manifest['mirror_dir']}")
    print(f"  salt-master: {salt_bin('salt')} -c {MASTER_CONF} ...   (or: tests/lab/lab.sh salt ...)")
    print(f"  pillar: {PILLAR_DIR}/k8s.sls; formulas/_modules/_states served from {SALT_TREE}"
          + ("" if SALT_TREE == REPO else " (LAB_SALT_TREE, kept for this lab)"))
    admin = os.path.join(STATE, "admin.conf")
    first = sorted(n for n, v in lab["nodes"].items() if "master" in v["roles"])[0]
    print(f"  admin kubeconfig: /etc/kubernetes/admin.conf on {first}; host copy {admin} "
          + (f"(present: kubectl --kubeconfig {admin} get nodes)" if os.path.exists(admin)
             else "(not yet: the control-plane formula writes it)"))
    print("  reach a node: tests/lab/lab.sh exec <id> <cmd> | tests/lab/lab.sh shell <id>")
    total = sum(dt for _, dt in TIMINGS)
    print("  wall time per phase:")
    for name, dt in TIMINGS:
        print(f"    {dt:8.1f}s  {name}")
    print(f"    {total:8.1f}s  total")
    with open(os.path.join(STATE, "timings.log"), "a") as fh:
        fh.write(json.dumps({"at": datetime.datetime.now().isoformat(timespec="seconds"), "phases": TIMINGS,
                             "total": total}) + "\n")


def cmd_down(args):
    with lock():
        lab = load_lab() or {"nodes": {}}
        ids = set(lab["nodes"]) | (set(os.listdir(NODES_DIR)) if os.path.isdir(NODES_DIR) else set())
        with phase(f"stop nodes ({len(ids)})"):
            for n in sorted(ids):   # all power off at once; node_stop then waits for each
                if init_pid(n):
                    nsenter(n, ["systemctl", "--no-block", "poweroff"], check=False)
            for n in sorted(ids):
                node_stop(n)
            host_sysctls_restore()
        with phase("stop salt-master + mirror, remove bridge"):
            master_stop()
            mirror_stop()
            bridge_down()
        with phase(f"remove lab state {STATE} (caches in {CACHE} stay)"):
            leftovers = [n for n in ids if mounted(node_dir(n, "rootfs"))]
            if leftovers:
                die(f"still mounted: {leftovers}; not removing {STATE}")
            for entry in os.listdir(STATE):
                if entry != ".lock":
                    p = os.path.join(STATE, entry)
                    shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
    os.unlink(os.path.join(STATE, ".lock"))
    with contextlib.suppress(OSError):
        os.rmdir(STATE)


def cmd_status(args):
    lab = load_lab()
    if lab is None:
        print(f"no lab ({LAB_JSON} missing)")
        mp = master_pid()
        print(f"bridge {BRIDGE}: {'present' if link_exists(BRIDGE) else 'absent'}; salt-master: "
              f"{'running' if mp else 'stopped'}; mirror: {'running' if mirror_running() else 'stopped'}")
        return 0
    mp = master_pid()
    pids = {n: init_pid(n) for n in lab["nodes"]}
    pings = salt_json("*", "test.ping", "--timeout=5", timeout=60) if mp else {}
    print(f"bridge {BRIDGE}: {'up ' + HOST_IP + '/24' if link_exists(BRIDGE) else 'absent'}")
    mpid = mirror_running()
    print(f"mirror: {'running pid ' + str(mpid) + ' ' + MIRROR_URL + ' <- ' + read(os.path.join(STATE, 'mirror.dir'), '') if mpid else 'stopped'}")
    print(f"salt-master: {'running pid ' + str(mp) + ' (salt -c ' + MASTER_CONF + ')' if mp else 'stopped'}")
    print(f"{'node':10s} {'ip':13s} {'roles':12s} {'node':5s} {'systemd':8s} {'ping':5s}")
    for nid, n in sorted(lab["nodes"].items()):
        state = "-"
        if pids[nid]:
            state = nsenter(nid, ["systemctl", "is-system-running"], check=False).stdout.strip() or "?"
        ping = "yes" if pings.get(nid) is True else "no"
        print(f"{nid:10s} {n['ip']:13s} {','.join(n['roles']):12s} {'up' if pids[nid] else 'down':5s} "
              f"{state:8s} {ping:5s}")
    admin = os.path.join(STATE, "admin.conf")
    print(f"admin kubeconfig: {admin if os.path.exists(admin) else '(none yet)'}")
    return 0


def _need_lab():
    lab = load_lab()
    if lab is None:
        die("no lab: run `make lab` first")
    return lab


def cmd_node(args):
    action, node_id = args[0], args[1] if len(args) > 1 else die(f"usage: {args[0]} <node id>")
    with lock():
        lab = _need_lab()
        if node_id not in lab["nodes"]:
            die(f"{node_id} is not in the lab ({', '.join(sorted(lab['nodes']))})")
        if action in ("node-stop", "node-restart"):
            with phase(f"stop {node_id}"):
                node_stop(node_id)
        if action in ("node-start", "node-restart"):
            since = jid_now()
            with phase(f"boot {node_id}"):
                bridge_up()
                node_boot(node_id, lab, lab["nodes"][node_id]["rootfs"])
                node_wait_booted(node_id)
                wait_minions([node_id])
            with phase(f"{node_id}: boot highstate"):
                wait_idle([node_id])
                boot_highstate_report([node_id], since)
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
        lab["nodes"][node_id] = dict(node_entry(node_id), boot_converge=True)
        manifest, rootfs, _ = ensure_infra(lab)
        first_rootfs = next((n["rootfs"] for n in lab["nodes"].values() if n.get("rootfs")), rootfs)
        with phase(f"inventory: {node_id} {ip} in the pillar, /etc/hosts of running nodes"):
            running = [n for n in lab["nodes"] if n != node_id and init_pid(n)]
            for n in running:
                write_hosts(node_dir(n, "rootfs"), lab)
            if running:
                salt("-L", ",".join(running), "saltutil.refresh_pillar", check=False)
        since = jid_now()
        with phase(f"boot {node_id}"):
            node_boot(node_id, lab, first_rootfs)
            save_lab(lab)
            node_wait_booted(node_id)
            wait_minions([node_id])
        with phase(f"{node_id}: boot highstate"):
            wait_idle([node_id])
            boot_highstate_report([node_id], since)
    return 0


def cmd_exec(args):
    if len(args) < 2:
        die("usage: exec <node id> <command...>")
    pid = init_pid(args[0])
    if not pid:
        die(f"{args[0]} is not running")
    env = {"PATH": NODE_PATH, "HOME": "/root", "TERM": os.environ.get("TERM", "dumb"), "LANG": "C.UTF-8"}
    os.execvpe("nsenter", ["nsenter", "-t", str(pid), "-a"] + args[1:], env)


def cmd_salt(name, args):
    os.execv(salt_bin(name), [salt_bin(name), "-c", MASTER_CONF] + args)


def cmd_check_images(args):
    lab = _need_lab()
    node_id = args[0] if args else next((n for n in sorted(lab["nodes"]) if n.startswith("worker")),
                                        sorted(lab["nodes"])[0])
    manifest = build_artifacts()
    print(check_images(node_id, manifest))
    return 0


def main(argv):
    if os.geteuid() != 0:
        die("the lab needs root (network links, mounts, systemd-nspawn)")
    cmd, args = (argv[0], argv[1:]) if argv else ("up", [])
    if cmd == "up":
        return cmd_up(args)
    if cmd == "down":
        return cmd_down(args)
    if cmd == "status":
        return cmd_status(args)
    if cmd in ("node-stop", "node-start", "node-restart"):
        return cmd_node([cmd] + args)
    if cmd == "add-worker":
        return cmd_add_worker(args)
    if cmd == "exec":
        return cmd_exec(args)
    if cmd == "shell":
        return cmd_exec(args[:1] + ["bash", "-l"])
    if cmd in ("salt", "salt-run", "salt-key", "salt-cp"):
        return cmd_salt(cmd, args)
    if cmd == "check-images":
        return cmd_check_images(args)
    if cmd == "orchestrate":
        lab = _need_lab()
        with lock():
            ok, log = orchestrate(lab)
            copy_admin_conf(lab)
        return 0 if ok else 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) or 0)
