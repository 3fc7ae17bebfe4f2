#!/usr/bin/env python3
"""Build the lab's artifact mirror: a directory laid out like the upstream download sites, so that kubesalt's own
artifact states (`<mirror>/<upstream host>/<upstream path>`, pinned sha256) install every binary on the nodes.

Sources, all offline-capable on this machine:
  - Kubernetes 1.20.2 server binaries + kubectl: the cache tests/lab/build/kubernetes.sh fills
  - etcd/etcdctl, containerd/containerd-shim-runc-v2/ctr, runc, CNI plugins: Debian .debs of the suite the lab
    profile names (profiles.json; fetched by debs.py with the suite's own apt lists, `dpkg-deb -x`; nothing is
    installed on the host), repackaged in the upstream tarball shapes; busybox (the workload image): bookworm's
  - the pause sandbox image: pause.c from the same Kubernetes tree, compiled statically with gcc
  - OCI image archives written by oci_image.py (no docker)

    artifacts.py [--cache /var/cache/kubesalt] [--kubernetes 1.20.2] [--profile current]

Prints the path of manifest.json: {"mirror_dir", "key", "profile", "node_suite", "versions", "debs", "files":
{component: {version, path, sha256, size}}, "images": [{name, path, sha256}]}. Output is cached under
<cache>/lab/mirror/<key>, keyed by the profile, this script, oci_image.py, profiles.json, the Kubernetes build's
SHA256SUMS + pause.c and the exact .deb files; tarballs are reproducible (fixed mtimes and owners), so the same inputs
always give the same digests.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import debs  # noqa: E402
import oci_image  # noqa: E402

PROFILES_FILE = os.path.join(HERE, "profiles.json")
KUBE_BINS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"]
PAUSE_REF = "k8s.gcr.io/pause:3.2"
BUSYBOX_REF = "kubesalt.lab/busybox:1.35"
IMAGE_HOST = "kubesalt.lab"  # upstream-shaped image URLs: https://kubesalt.lab/images/<file>
BUSYBOX_APPLETS = ["sh", "ash", "cat", "date", "echo", "env", "grep", "hostname", "id", "ip", "ls", "mkdir", "nc",
                   "nslookup", "ping", "ps", "rm", "sed", "sleep", "tail", "top", "touch", "true", "false", "uname",
                   "wget", "wc", "head", "awk", "find", "mount", "df", "du", "kill", "vi"]


def say(msg):
    print(f"[artifacts] {msg}", file=sys.stderr, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_profiles():
    with open(PROFILES_FILE) as fh:
        return json.load(fh)


def profile_sources(name):
    """{component: spec} of lab profile ``name`` plus the busybox image source (profiles.json)."""
    data = load_profiles()
    if name not in data["profiles"]:
        known = ", ".join(sorted(data["profiles"]))
        raise SystemExit(f"artifacts.py: no lab profile {name!r} (profiles.json has {known})")
    return {**data["profiles"][name]["components"], **data["images"]}


def fetch_profile(cache, name):
    """{component: {package: .deb path}} and {component: upstream version}, each checked against its family."""
    sources = profile_sources(name)
    by_suite = {}
    for spec in sources.values():
        by_suite.setdefault(spec["suite"], []).extend(spec["packages"])
    fetched = {suite: debs.fetch(cache, suite, sorted(set(pkgs))) for suite, pkgs in sorted(by_suite.items())}
    paths, versions = {}, {}
    for component, spec in sorted(sources.items()):
        paths[component] = {p: fetched[spec["suite"]][p] for p in spec["packages"]}
        main = spec["packages"][0]
        deb_ver = debs.deb_field(paths[component][main])
        versions[component] = upstream_version(deb_ver)
        if not versions[component].startswith(spec["family"]):
            raise SystemExit(f"artifacts.py: {spec['suite']}'s {main} is {deb_ver}; lab profile {name} wants "
                             f"{spec['family']}*")
    return paths, versions


def upstream_version(deb_ver):
    """1:1.35.0-4+deb12u1+b1 -> 1.35.0; 1.6.20~ds1-1+deb12u3 -> 1.6.20; 3.4.23-4+b4 -> 3.4.23."""
    v = deb_ver.split(":", 1)[-1]
    return re.match(r"^(\d+\.\d+\.\d+)", v).group(1)


def _tarinfo(name, size=0, mode=0o755, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.mtime = kind, size, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_tgz(dest, members, dirs=()):
    """members: [(arcname, host path)]; deterministic gzip tar."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in dirs:
            tar.addfile(_tarinfo(d, kind=tarfile.DIRTYPE))
        for arcname, path in members:
            with open(path, "rb") as fh:
                data = fh.read()
            tar.addfile(_tarinfo(arcname, len(data)), io.BytesIO(data))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())


def place(src, dest):
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def build(cache, k8s_version, profile):
    kube = os.path.join(cache, "kubernetes", k8s_version)
    if not os.path.exists(os.path.join(kube, ".complete")):
        raise SystemExit(f"artifacts.py: no Kubernetes build in {kube} (run tests/lab/build/kubernetes.sh)")
    paths, versions = fetch_profile(cache, profile)
    deb_files = sorted(p for pkgs in paths.values() for p in pkgs.values())

    key_src = hashlib.sha256(profile.encode())
    for path in (__file__, oci_image.__file__, PROFILES_FILE, os.path.join(kube, "SHA256SUMS"),
                 os.path.join(kube, "pause.c")):
        with open(path, "rb") as fh:
            key_src.update(fh.read())
    for path in deb_files:
        key_src.update(os.path.basename(path).encode())
    key = f"{k8s_version}-{profile}-{key_src.hexdigest()[:12]}"
    out = os.path.join(cache, "lab", "mirror", key)
    manifest_path, tmp = oci_image.start_build(out, "manifest.json", say)
    if tmp is None:
        return manifest_path
    root = os.path.join(tmp, "www")
    work = tempfile.mkdtemp(prefix="kubesalt-lab-artifacts-")
    try:
        ex = {}
        for pkgs in paths.values():
            for pkg, path in pkgs.items():
                ex[pkg] = os.path.join(work, pkg)
                subprocess.run(["dpkg-deb", "-x", path, ex[pkg]], check=True)
        files = {}

        def record(component, version, rel):
            p = os.path.join(root, rel)
            files[component] = {"version": version, "path": rel, "sha256": sha256_file(p), "size": os.path.getsize(p)}

        for b in KUBE_BINS:
            rel = f"dl.k8s.io/release/v{k8s_version}/bin/linux/amd64/{b}"
            place(os.path.join(kube, "bin", b), os.path.join(root, rel))
            record(b, k8s_version, rel)

        v = versions["etcd"]
        top = f"etcd-v{v}-linux-amd64"
        rel = f"github.com/etcd-io/etcd/releases/download/v{v}/{top}.tar.gz"
        write_tgz(os.path.join(root, rel), [(f"{top}/etcd", os.path.join(ex["etcd-server"], "usr/bin/etcd")),
                                            (f"{top}/etcdctl", os.path.join(ex["etcd-client"], "usr/bin/etcdctl"))],
                  dirs=[top + "/"])
        record("etcd", v, rel)

        v = versions["containerd"]
        rel = f"github.com/containerd/containerd/releases/download/v{v}/containerd-{v}-linux-amd64.tar.gz"
        write_tgz(os.path.join(root, rel),
                  [(f"bin/{b}", os.path.join(ex["containerd"], "usr/bin", b))
                   for b in ("containerd", "containerd-shim-runc-v2", "ctr")], dirs=["bin/"])
        record("containerd", v, rel)

        v = versions["runc"]
        rel = f"github.com/opencontainers/runc/releases/download/v{v}/runc.amd64"
        runc = os.path.join(ex["runc"], "usr/sbin/runc")
        if not os.path.exists(runc):
            runc = os.path.join(ex["runc"], "usr/bin/runc")
        place(runc, os.path.join(root, rel))
        record("runc", v, rel)

        v = versions["cni_plugins"]
        rel = f"github.com/containernetworking/plugins/releases/download/v{v}/cni-plugins-linux-amd64-v{v}.tgz"
        write_tgz(os.path.join(root, rel),
                  [(f"./{b}", os.path.join(ex["containernetworking-plugins"], "usr/lib/cni", b))
                   for b in ("bridge", "host-local", "loopback", "portmap")], dirs=["./"])
        record("cni-plugins", v, rel)

        # pause: the Kubernetes tree's build/pause/linux/pause.c, static, as the image the 1.20 profile names.
        pause_bin = os.path.join(work, "pause")
        subprocess.run(["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{k8s_version}-kubesalt-lab",
                        "-o", pause_bin, os.path.join(kube, "pause.c")], check=True)
        subprocess.run(["strip", pause_bin], check=True)
        images = []

        def image(ref, fname, layer, **kw):
            images.append(oci_image.write_image(root, f"{IMAGE_HOST}/images/{fname}", ref, layer, **kw))

        image(PAUSE_REF, "pause-3.2.tar", oci_image.layer_tar([(pause_bin, "pause", 0o755)]),
              entrypoint=["/pause"])
        busybox = os.path.join(ex["busybox-static"], "bin/busybox")
        layer = oci_image.layer_tar(
            [(busybox, "bin/busybox", 0o755)],
            symlinks=[(f"bin/{a}", "busybox") for a in BUSYBOX_APPLETS],
            dirs=[("tmp", 0o1777), ("etc", 0o755), ("root", 0o700), ("var", 0o755), ("proc", 0o555),
                  ("sys", 0o555), ("dev", 0o755)])
        image(BUSYBOX_REF, "busybox-1.35.tar", layer, cmd=["sh"])

        manifest = {
            "key": key,
            "mirror_dir": os.path.join(out, "www"),
            "kubernetes": k8s_version,
            "profile": profile,
            "node_suite": load_profiles()["profiles"][profile]["node_suite"],
            "versions": {"kubernetes": k8s_version, "etcd": versions["etcd"], "containerd": versions["containerd"],
                         "runc": versions["runc"], "cni_plugins": versions["cni_plugins"]},
            "debs": {os.path.basename(p).split("_")[0]: debs.deb_field(p) for p in deb_files},
            "files": files,
            "images": images,
        }
        oci_image.publish(tmp, out, "manifest.json", manifest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"built: {out}")
    return manifest_path


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cache", default=os.environ.get("KUBESALT_CACHE", "/var/cache/kubesalt"))
    p.add_argument("--kubernetes", default="1.20.2")
    p.add_argument("--profile", default=os.environ.get("LAB_PROFILE") or load_profiles()["default"])
    args = p.parse_args()
    print(build(args.cache, args.kubernetes, args.profile))


if __name__ == "__main__":
    main()
