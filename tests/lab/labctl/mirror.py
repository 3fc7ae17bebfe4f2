"""The artifact mirror: python's http.server on the bridge address, serving the directory artifacts.py laid out like
the upstream download sites, so the formula's own download-and-verify path installs every binary from it."""

import contextlib
import hashlib
import os
import signal
import subprocess
import urllib.request

from .common import HOST_IP, MIRROR_PORT, MIRROR_URL, STATE, alive, cmdline, die, read, read_pid, wait_for, write

MIRROR_PID = os.path.join(STATE, "mirror.pid")


def mirror_running():
    pid = read_pid(MIRROR_PID)
    return pid if alive(pid) and "http.server" in cmdline(pid) else 0


def mirror_start(www):
    pid = mirror_running()
    if pid and read(os.path.join(STATE, "mirror.dir")) == www:
        return pid
    mirror_stop()
    log = open(os.path.join(STATE, "mirror.log"), "a")  # noqa: SIM115 -- held open by the daemon it is handed to
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-m", "http.server", str(MIRROR_PORT), "--bind", HOST_IP, "--directory", www],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
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
