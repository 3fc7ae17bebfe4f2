"""The lab's salt-master and pillar.

The master runs with the configuration users install: `conf/master.d/kubesalt.conf` of the served tree copied
verbatim into its master.d, plus the lab's own settings (id, root_dir, the bridge interface, no auto-accept, ...) in
`master.d/zz-kubesalt-lab.conf`, which sorts after it. Salt merges master.d files in sorted order, later scalars
win, but lists are *merged* (salt.config.include_config -> dictupdate.update(..., merge_lists=True)): a lab
`file_roots` there would be appended to `/srv/kubesalt/formulas`, not replace it. So the lab sets no file_roots or
pillar_roots at all: the master (and every salt/salt-run/salt-key the lab runs) lives in a mount namespace of its
own where /srv is a private tmpfs with /srv/kubesalt = the served salt tree (read-only) and /srv/pillar = the lab's
pillar. The shipped paths are used as they are, and the master serves that tree's formulas/ and nothing else."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import time

from . import common
from .common import HOST_IP, MASTER_CONF, MASTER_PKI, MIRROR_URL, PILLAR_DIR, STATE, VENV

KEYS_DIR = os.path.join(STATE, "keys")
SHIPPED_CONF = os.path.join("conf", "master.d", "kubesalt.conf")  # relative to the served salt tree
LAB_CONF_NAME = "zz-kubesalt-lab.conf"
SRV_TREE, SRV_PILLAR = "/srv/kubesalt", "/srv/pillar"  # as conf/master.d/kubesalt.conf names them


# -- pillar ------------------------------------------------------------------------------------------------------------
def pillar(lab, manifest):
    pins = {}
    for component, f in sorted(manifest["files"].items()):
        pins.setdefault(component, {})[f["version"]] = {"amd64": {"sha256": f["sha256"]}}
    return {
        "versions": manifest["versions"],
        "nodes": {nid: {"roles": n["roles"], "ip": n["ip"]} for nid, n in sorted(lab["nodes"].items())},
        "network": {"mode": "routes"},
        "artifacts": {"mirror": MIRROR_URL, "pins": pins},
        "container_runtime": {
            "crictl": False,
            "sandbox_image": "k8s.gcr.io/pause:3.2",
            # The lab's own images, then its extra images (the conformance run's: labctl/conformance.py).
            "images": [
                {"name": i["name"], "url": i["url"], "sha256": i["sha256"]}
                for i in manifest["images"] + lab.get("extra_images", [])
            ],
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


def write_pillar(lab, manifest):
    """Return True when the pillar changed."""
    body = (
        textwrap.dedent(f"""\
        # Written by tests/lab/labctl -- the kubesalt lab's pillar (profile {manifest["profile"]}). Every digest is
        # the sha256 of the file the lab mirror ({MIRROR_URL}) serves; image URLs are upstream-shaped and reach the
        # mirror through k8s:artifacts:mirror like every other artifact. JSON is YAML.
        """)
        + "k8s: "
        + json.dumps(pillar(lab, manifest), indent=2, sort_keys=True)
        + "\n"
    )
    old = common.read(os.path.join(PILLAR_DIR, "k8s.sls"))
    common.write(os.path.join(PILLAR_DIR, "top.sls"), "base:\n  '*':\n    - k8s\n")
    common.write(os.path.join(PILLAR_DIR, "k8s.sls"), body)
    return old != body


# -- configuration -----------------------------------------------------------------------------------------------------
def lab_settings(conf_dir):
    return {
        "id": "kubesalt-lab-master",
        "root_dir": conf_dir,
        "interface": HOST_IP,
        "publish_port": 4505,
        "ret_port": 4506,
        "user": "root",
        "open_mode": False,
        "auto_accept": False,
        "fileserver_list_cache_time": 0,
        "timeout": 20,
        "gather_job_timeout": 30,
        "log_level_logfile": "info",
    }


def write_master_config(conf_dir, salt_tree):
    """<conf_dir>/master (empty but for a comment), master.d/kubesalt.conf (the served tree's, byte for byte) and
    master.d/zz-kubesalt-lab.conf. Return a fingerprint of all three plus the tree (a change restarts the master)."""
    shipped = os.path.join(salt_tree, SHIPPED_CONF)
    if not os.path.exists(shipped):
        common.die(f"{shipped} is missing: the lab master takes its configuration from the served tree")
    with open(shipped) as fh:
        shipped_text = fh.read()
    main = f"# kubesalt lab master (salt -c {conf_dir}): everything is in master.d/.\n"
    lab = (
        "# Written by tests/lab/labctl: the lab's own settings, after kubesalt.conf (sorted order). No file_roots\n"
        f"# or pillar_roots: in the master's mount namespace {SRV_TREE} = {salt_tree}\n"
        f"# and {SRV_PILLAR} = the lab pillar.\n" + json.dumps(lab_settings(conf_dir), indent=2, sort_keys=True) + "\n"
    )
    common.write(os.path.join(conf_dir, "master"), main)
    common.write(os.path.join(conf_dir, "master.d", "kubesalt.conf"), shipped_text)
    common.write(os.path.join(conf_dir, "master.d", LAB_CONF_NAME), lab)
    return f"{salt_tree}\0{PILLAR_DIR}\0{main}\0{shipped_text}\0{lab}"


# -- keys --------------------------------------------------------------------------------------------------------------
def salt_bin(name):
    return os.path.join(VENV, "bin", name)


def gen_keys(name, directory=KEYS_DIR):
    """A minion keypair made by `salt-key --gen-keys` (in a scratch dir: salt-key 3008 also drops a keypair for its
    own id there, and its final fingerprint print fails with a traceback although the keys are written)."""
    pem, pub = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.pub")
    if not (os.path.exists(pem) and os.path.exists(pub)):
        os.makedirs(directory, exist_ok=True)
        scratch = os.path.join(directory, f".gen-{name}")
        shutil.rmtree(scratch, ignore_errors=True)
        os.makedirs(scratch)
        res = common.run(
            [salt_bin("salt-key"), "-c", MASTER_CONF, f"--gen-keys={name}", f"--gen-keys-dir={scratch}"],
            check=False,
            quiet=True,
        )
        for src, dest in ((f"{name}.pem", pem), (f"{name}.pub", pub)):
            if not os.path.exists(os.path.join(scratch, src)):
                common.die(f"salt-key --gen-keys={name} wrote no {src}: {res.stdout}{res.stderr}")
            os.replace(os.path.join(scratch, src), dest)
        shutil.rmtree(scratch)
    return pem, pub


def master_keys(lab):
    """Every minion's keypair, generated here; their public keys accepted up front (no auto_accept). The master
    makes its own keypair at first start (<id>.pem, master.pem -> it); the lab gives its public key to the nodes."""
    os.makedirs(os.path.join(MASTER_PKI, "minions"), exist_ok=True)
    for nid in lab["nodes"]:
        _, pub = gen_keys(nid)
        dest = os.path.join(MASTER_PKI, "minions", nid)
        if common.read(dest) != common.read(pub):
            shutil.copyfile(pub, dest)


# -- the daemon --------------------------------------------------------------------------------------------------------
def master_pid():
    pid = common.read_pid(os.path.join(MASTER_CONF, "var/run/salt-master.pid"))
    return pid if common.alive(pid) and "salt-master" in common.cmdline(pid) else 0


NAMESPACE_SCRIPT = f"""set -eu
mount -t tmpfs -o mode=0755,size=1m kubesalt-lab-srv /srv
mkdir -p {SRV_TREE} {SRV_PILLAR}
mount --bind "$1" {SRV_TREE}
mount -o remount,bind,ro {SRV_TREE}
mount --bind "$2" {SRV_PILLAR}
shift 2
exec "$@"
"""


def master_start(lab):
    fingerprint = write_master_config(MASTER_CONF, lab["salt_tree"])
    stamp = os.path.join(MASTER_CONF, ".fingerprint")
    changed = common.read(stamp) != fingerprint
    master_keys(lab)
    pid = master_pid()
    if pid and not changed:
        return pid
    if pid:
        common.say("salt-master configuration or served tree changed: restarting it")
        master_stop()
    os.makedirs("/srv", exist_ok=True)  # the mount point of the namespace's private tmpfs
    os.makedirs(PILLAR_DIR, exist_ok=True)
    common.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            NAMESPACE_SCRIPT,
            "kubesalt-lab-master",
            lab["salt_tree"],
            PILLAR_DIR,
            salt_bin("salt-master"),
            "-c",
            MASTER_CONF,
            "-d",
        ]
    )
    common.write(stamp, fingerprint)

    def listening():
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex((HOST_IP, 4506)) == 0 and master_pid()

    common.wait_for(listening, 60, what="the salt-master on 4506")
    common.wait_for(lambda: os.path.exists(os.path.join(MASTER_PKI, "master.pub")), 30, what="the master's key")
    return master_pid()


def master_stop():
    pid = master_pid()
    if pid:
        os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(SystemExit):
            common.wait_for(lambda: not common.alive(pid), 20, what="salt-master to stop")
        if common.alive(pid):
            os.kill(pid, signal.SIGKILL)
    # the master's worker processes are in its process group
    for proc in common.procs_matching(f"-c {MASTER_CONF}"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc, signal.SIGKILL)


def salt_argv(name, *args):
    """argv of the lab master's `name` CLI (salt, salt-run, salt-key, salt-cp), run in the master's mount namespace
    (salt-run compiles orchestrations from the file_roots itself)."""
    pid = master_pid()
    if not pid:
        common.die("the lab's salt-master is not running (make lab)")
    return ["nsenter", "-t", str(pid), "-m", "--", salt_bin(name), "-c", MASTER_CONF] + list(args)


def salt(*args, timeout=None, check=True, capture=True):
    return common.run(salt_argv("salt", *args), check=check, capture=capture, timeout=timeout)


def salt_json(*args, timeout=None):
    res = salt("--out=json", "--static", *args, timeout=timeout, check=False)
    try:
        return json.loads(res.stdout or "{}")
    except ValueError:
        return {}


def salt_run_json(*args, timeout=None):
    """(exit code, parsed JSON or None, raw stdout+stderr) of `salt-run --out=json <args>`."""
    res = common.run(salt_argv("salt-run", "--out=json", *args), check=False, capture=True, timeout=timeout)
    try:
        data = json.loads(res.stdout) if res.stdout.strip() else None
    except ValueError:
        data = None
    return res.returncode, data, (res.stdout or "") + (res.stderr or "")


# -- minions -----------------------------------------------------------------------------------------------------------
def answered_ping(ids, seconds=5):
    """The minions among ``ids`` that answer a test.ping within ``seconds``. The CLI's JSON output streams one
    document per answer (no --static), and the CLI is stopped after ``seconds``: a minion that was not yet connected
    when the ping was published never answers it, and the CLI would otherwise wait --timeout and then the master's
    gather_job_timeout (30 s here) asking it with find_job."""
    argv = salt_argv("salt", "--out=json", "--timeout=3", "-L", ",".join(sorted(ids)), "test.ping")
    try:
        out = subprocess.run(argv, capture_output=True, timeout=seconds).stdout
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
    text, pos, seen = out.decode(errors="replace"), 0, set()
    decoder = json.JSONDecoder()
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        if isinstance(doc, dict):
            seen |= {m for m, v in doc.items() if v is True}
    return seen & set(ids)


def wait_minions(ids, timeout=180):
    """Ping until every minion answers; each round a fresh ping, so a minion is seen as soon as it is connected."""
    pending = set(ids)
    end = time.monotonic() + timeout
    while pending:
        pending -= answered_ping(pending)
        if pending and time.monotonic() > end:
            common.die(f"minions not answering test.ping after {timeout}s: {', '.join(sorted(pending))}")


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
            sorted(missing)
        )
        if desc != last:
            common.say(f"  waiting for running jobs: {desc}")
            last = desc
        if time.monotonic() > end:
            common.die(f"minions still busy after {timeout}s: {desc}")
        time.sleep(3)
