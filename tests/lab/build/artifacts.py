#!/usr/bin/env python3
"""Build the lab's artifact mirror: a directory laid out like the upstream download sites, so that kubesalt's own
artifact states (`<mirror>/<upstream host>/<upstream path>`, pinned sha256) install every binary on the nodes.

Sources, all offline-capable on this machine:
  - Kubernetes 1.20.2 server binaries + kubectl: the cache tests/lab/build/kubernetes.sh fills
  - etcd/etcdctl, containerd/containerd-shim-runc-v2/ctr, runc, CNI plugins, busybox: Debian bookworm .debs
    (`apt-get download` + `dpkg-deb -x`; nothing is installed on the host), repackaged in the upstream tarball shapes
  - the pause sandbox image: pause.c from the same Kubernetes tree, compiled statically with gcc
  - OCI image archives written by oci_image.py (no docker)

    artifacts.py [--cache /var/cache/kubesalt] [--kubernetes 1.20.2]

Prints the path of manifest.json: {"mirror_dir", "key", "versions", "debs", "files": {component: {version, path,
sha256, size}}, "images": [{name, path, sha256}]}. Output is cached under <cache>/lab/mirror/<key>, keyed by this
script, oci_image.py, the Kubernetes build's SHA256SUMS + pause.c and the exact .deb files; tarballs are
reproducible (fixed mtimes and owners), so the same inputs always give the same digests.
"""

import argparse
import glob
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
import oci_image  # noqa: E402

DEBS = ["etcd-server", "etcd-client", "containerd", "runc", "containernetworking-plugins", "busybox-static"]
# upstream component version expected from each package (the lab pillar pins these versions)
EXPECT = {"etcd-server": "3.4.23", "containerd": "1.6.20", "runc": "1.1.5", "containernetworking-plugins": "1.1.1",
          "busybox-static": "1.35.0"}
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


def fetch_debs(deb_dir):
    """apt-get download each package once (the newest candidate); return {package: path}."""
    os.makedirs(deb_dir, exist_ok=True)
    found = {}
    missing = []
    for pkg in DEBS:
        cands = sorted(glob.glob(os.path.join(deb_dir, f"{pkg}_*.deb")))
        if cands:
            found[pkg] = cands[-1]
        else:
            missing.append(pkg)
    if missing:
        say(f"apt-get download {' '.join(missing)}")
        cmd = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root"] + missing
        if subprocess.run(cmd, cwd=deb_dir, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(cmd, cwd=deb_dir, check=True, stdout=subprocess.DEVNULL)
        return fetch_debs(deb_dir)
    return found


def deb_version(path):
    return subprocess.run(["dpkg-deb", "-f", path, "Version"], check=True, capture_output=True,
                          text=True).stdout.strip()


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


def build(cache, k8s_version):
    kube = os.path.join(cache, "kubernetes", k8s_version)
    if not os.path.exists(os.path.join(kube, ".complete")):
        raise SystemExit(f"artifacts.py: no Kubernetes build in {kube} (run tests/lab/build/kubernetes.sh)")
    debs = fetch_debs(os.path.join(cache, "lab", "debs"))
    versions = {pkg: deb_version(path) for pkg, path in debs.items()}
    for pkg, want in EXPECT.items():
        got = upstream_version(versions[pkg])
        if got != want:
            raise SystemExit(f"artifacts.py: Debian {pkg} is {versions[pkg]}, the lab pins {want}")

    key_src = hashlib.sha256()
    for path in (__file__, oci_image.__file__, os.path.join(kube, "SHA256SUMS"), os.path.join(kube, "pause.c")):
        with open(path, "rb") as fh:
            key_src.update(fh.read())
    for pkg in DEBS:
        key_src.update(os.path.basename(debs[pkg]).encode())
    key = f"{k8s_version}-{key_src.hexdigest()[:12]}"
    out = os.path.join(cache, "lab", "mirror", key)
    manifest_path = os.path.join(out, "manifest.json")
    if os.path.exists(manifest_path):
        say(f"cached: {out}")
        return manifest_path

    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    root = os.path.join(tmp, "www")
    work = tempfile.mkdtemp(prefix="kubesalt-lab-artifacts-")
    try:
        ex = {}
        for pkg, path in debs.items():
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

        v = EXPECT["etcd-server"]
        top = f"etcd-v{v}-linux-amd64"
        rel = f"github.com/etcd-io/etcd/releases/download/v{v}/{top}.tar.gz"
        write_tgz(os.path.join(root, rel), [(f"{top}/etcd", os.path.join(ex["etcd-server"], "usr/bin/etcd")),
                                            (f"{top}/etcdctl", os.path.join(ex["etcd-client"], "usr/bin/etcdctl"))],
                  dirs=[top + "/"])
        record("etcd", v, rel)

        v = EXPECT["containerd"]
        rel = f"github.com/containerd/containerd/releases/download/v{v}/containerd-{v}-linux-amd64.tar.gz"
        write_tgz(os.path.join(root, rel),
                  [(f"bin/{b}", os.path.join(ex["containerd"], "usr/bin", b))
                   for b in ("containerd", "containerd-shim-runc-v2", "ctr")], dirs=["bin/"])
        record("containerd", v, rel)

        v = EXPECT["runc"]
        rel = f"github.com/opencontainers/runc/releases/download/v{v}/runc.amd64"
        runc = os.path.join(ex["runc"], "usr/sbin/runc")
        if not os.path.exists(runc):
            runc = os.path.join(ex["runc"], "usr/bin/runc")
        place(runc, os.path.join(root, rel))
        record("runc", v, rel)

        v = EXPECT["containernetworking-plugins"]
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
            data, digest = oci_image.image_archive(ref, layer, **kw)
            rel = f"{IMAGE_HOST}/images/{fname}"
            dest = os.path.join(root, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as fh:
                fh.write(data)
            images.append({"name": ref, "path": rel, "url": f"https://{rel}",
                           "sha256": hashlib.sha256(data).hexdigest(), "manifest": digest, "size": len(data)})

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
            "versions": {"kubernetes": k8s_version, "etcd": EXPECT["etcd-server"], "containerd": EXPECT["containerd"],
                         "runc": EXPECT["runc"], "cni_plugins": EXPECT["containernetworking-plugins"]},
            "debs": versions,
            "files": files,
            "images": images,
        }
        with open(os.path.join(tmp, "manifest.json"), "w") as fh:
            json.dump(manifest, fh, indent=1, sort_keys=True)
        shutil.rmtree(out, ignore_errors=True)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"built: {out}")
    return manifest_path


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cache", default=os.environ.get("KUBESALT_CACHE", "/var/cache/kubesalt"))
    p.add_argument("--kubernetes", default="1.20.2")
    args = p.parse_args()
    print(build(args.cache, args.kubernetes))


if __name__ == "__main__":
    main()
