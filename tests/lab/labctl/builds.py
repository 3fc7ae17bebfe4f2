"""What the lab is built from, each piece cached under $KUBESALT_CACHE keyed by its inputs: the lab profile (which
component versions, from which Debian suite, on which node suite: tests/lab/build/profiles.json), host tools and the
project venv, the Kubernetes binaries (kubernetes.sh), the artifact mirror + OCI images (artifacts.py) and the node
base image (rootfs.sh)."""

import hashlib
import json
import os
import shutil
import sys

from .common import BUILD, CACHE, FILES, K8S_VERSION, REPO, STATE, VENV, die, read, run, say, sha

PROFILES_FILE = os.path.join(BUILD, "profiles.json")


def profiles():
    with open(PROFILES_FILE) as fh:
        return json.load(fh)


def profile_name(lab=None):
    """The lab's profile: the one it was created with; LAB_PROFILE (default: profiles.json's default) for a new
    lab. Asking an existing lab for another profile is refused (make lab-down first)."""
    data = profiles()
    wanted = os.environ.get("LAB_PROFILE")
    if wanted and wanted not in data["profiles"]:
        die(f"LAB_PROFILE={wanted}: no such lab profile ({', '.join(sorted(data['profiles']))})")
    if lab is not None and lab.get("profile"):
        if wanted and wanted != lab["profile"]:
            die(f"this lab runs profile {lab['profile']}; LAB_PROFILE={wanted} needs a new lab (make lab-down first)")
        return lab["profile"]
    return wanted or data["default"]


def profile(name):
    return profiles()["profiles"][name]


# The nodes' kubelets see the host's filesystem: below 15 % free (imagefs.available, a hard eviction threshold) every
# node is tainted disk-pressure and nothing schedules -- for the kubelet's 5 minute transition period after it clears.
MIN_FREE_PERCENT = 20


def disk_headroom(path=STATE):
    """Refuse to bring nodes up while the filesystem of ``path`` has less than MIN_FREE_PERCENT free."""
    probe = path if os.path.exists(path) else os.path.dirname(path.rstrip("/")) or "/"
    st = os.statvfs(probe)
    free = 100.0 * st.f_bavail / st.f_blocks if st.f_blocks else 100.0
    if free < MIN_FREE_PERCENT:
        die(
            f"{probe}: {free:.0f} % free; the lab needs {MIN_FREE_PERCENT} % (the nodes' kubelets would taint every "
            "node disk-pressure below 15 %): free some space (old pytest --basetemp directories in /tmp?)"
        )


def host_tools():
    disk_headroom()
    need = {
        "systemd-nspawn": "systemd-container",
        "debootstrap": "debootstrap",
        "gcc": "gcc",
        "dpkg-deb": "dpkg",
        "nsenter": "util-linux",
        "unshare": "util-linux",
        "ip": "iproute2",
        "strip": "binutils",
    }
    missing = sorted({pkg for cmd, pkg in need.items() if not shutil.which(cmd)})
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/libc.a"):
        missing.append("libc6-dev")
    if missing:
        say(f"apt-get install {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if (
            run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing,
                check=False,
                quiet=True,
                env=env,
            ).returncode
            != 0
        ):
            run(["apt-get", "update", "-qq"], env=env, quiet=True)
            run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing, env=env, quiet=True)
    # the project's venv (salt-master runs from it) and the wheel cache the nodes' salt-minion is installed from
    run(["bash", os.path.join(REPO, "tests/bootstrap.sh")], env=dict(os.environ, VENV=VENV))


def wheel_dir():
    with open(os.path.join(REPO, "tests/requirements.txt"), "rb") as fh:
        key = hashlib.sha256(fh.read()).hexdigest()[:12]  # same key as tests/bootstrap.sh
    return os.path.join(CACHE, "wheels", key)


def kubernetes_dir():
    """The current Kubernetes build (a link kubernetes.sh keeps on the build of its patch set)."""
    return os.path.join(CACHE, "kubernetes", K8S_VERSION)


def kubectl():
    return os.path.join(kubernetes_dir(), "bin", "kubectl")


def build_kubernetes():
    run(["bash", os.path.join(BUILD, "kubernetes.sh")])
    patches = read(os.path.join(kubernetes_dir(), "PATCHES"), "")
    return patches.splitlines()[0] if patches else "no patch set"


def build_artifacts(profile_name_):
    res = run(
        [
            "/usr/bin/python3",
            os.path.join(BUILD, "artifacts.py"),
            "--cache",
            CACHE,
            "--kubernetes",
            K8S_VERSION,
            "--profile",
            profile_name_,
        ],
        capture=True,
    )
    sys.stderr.write(res.stderr)
    with open(res.stdout.strip().splitlines()[-1]) as fh:
        return json.load(fh)


def rootfs_key(suite):
    parts = [suite, read(os.path.join(BUILD, "rootfs.sh"))]
    for name in sorted(os.listdir(FILES)):
        parts.append(name + "\0" + read(os.path.join(FILES, name)))
    parts.append(wheel_dir())
    return f"{suite}-" + sha(*parts)


def build_rootfs(suite):
    out = os.path.join(CACHE, "lab", "rootfs", rootfs_key(suite))
    run(["bash", os.path.join(BUILD, "rootfs.sh"), out, wheel_dir(), suite])
    return out
