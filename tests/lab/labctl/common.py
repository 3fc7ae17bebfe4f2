"""Paths, settings and the small helpers every part of the lab driver uses: output with per-phase timings, running
commands, waiting, atomic file writes, pid files. Standard library only (the host's python3 runs the driver)."""

import contextlib
import hashlib
import ipaddress
import os
import shlex
import subprocess
import sys
import time

PKG = os.path.dirname(os.path.abspath(__file__))
HERE = os.path.dirname(PKG)  # tests/lab
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(HERE, "build")
FILES = os.path.join(HERE, "files")
STATE = os.environ.get("LAB_STATE", "/var/lib/kubesalt-lab")
CACHE = os.environ.get("KUBESALT_CACHE", "/var/cache/kubesalt")
VENV = os.environ.get("VENV") or os.path.join(REPO, ".venv")
K8S_VERSION = "1.20.2"

BRIDGE = "kslab0"
NET = ipaddress.ip_network("10.240.0.0/24")
HOST_IP = "10.240.0.1"
MIRROR_PORT = 8080
MIRROR_URL = f"http://{HOST_IP}:{MIRROR_PORT}"
MASTER_CONF = os.path.join(STATE, "master")  # salt -c <this>
MASTER_PKI = os.path.join(MASTER_CONF, "etc/salt/pki/master")
PILLAR_DIR = os.path.join(STATE, "pillar")
NODES_DIR = os.path.join(STATE, "nodes")
LAB_JSON = os.path.join(STATE, "lab.json")
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

T0 = time.monotonic()
TIMINGS = []


def elapsed():
    s = int(time.monotonic() - T0)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def say(msg):
    print(f"[lab {elapsed()}] {msg}", flush=True)


class LabError(SystemExit):
    """A lab command failed; the message says why (exit status 1)."""


def die(msg):
    print(f"[lab {elapsed()}] ERROR: {msg}", file=sys.stderr, flush=True)
    raise LabError(1)


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
    res = subprocess.run(
        cmd,
        check=False,
        text=True,
        env=env,
        timeout=timeout,
        stdout=subprocess.PIPE if capture or quiet else None,
        stderr=subprocess.PIPE if capture or quiet else None,
        **kw,
    )
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


def procs_matching(text):
    """PIDs whose command line contains ``text`` (this process excluded)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and text in cmdline(int(entry)):
            out.append(int(entry))
    return out


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


def link_exists(name):
    return run(["ip", "link", "show", "dev", name], check=False, quiet=True).returncode == 0


def mounted(path):
    return run(["mountpoint", "-q", path], check=False).returncode == 0
