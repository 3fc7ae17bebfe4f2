#!/usr/bin/env python3
"""Build the container images the upstream conformance suite (Kubernetes 1.20.2's e2e.test, focus [Conformance])
starts, as OCI archives, offline, under the exact references the suite names (the tree's test/utils/image/manifest.go),
so the e2e framework needs no registry and no KUBE_TEST_REPO_LIST: an image with a non-latest tag that containerd
already holds is used as it is (imagePullPolicy IfNotPresent).

Sources, nothing from a registry:
  - the e2e build of tests/lab/build/kubernetes.sh (same patched tree as the lab's binaries): agnhost,
    sample-apiserver, nonewprivs, agnhost's porter certificates, the Update Demo page (nautilus)
  - Debian bookworm binary packages (debs.py: own apt lists, nothing installed on the host): busybox-static (every
    image's base layer: a shell and the usual tools, like the upstream images' alpine/busybox bases); curl,
    netcat-openbsd, iproute2, iperf and bash (what agnhost's Dockerfile adds to alpine and the tests call); dash (the
    /bin/sh of every image that adds Debian programs); apache2-bin
    (httpd); nginx; etcd-server. Each program is taken with exactly the shared libraries its ELF headers name
    (readelf -d, recursively, from the packages apt resolves for it), not whole packages.
  - pause:3.2 is not built here: the lab's own images (artifacts.py) already preload it.

    conformance_images.py [--cache /var/cache/kubesalt] [--kubernetes 1.20.2]

Prints the path of images.json: {"key", "www", "images": [{name, path, url, sha256, manifest, size, from}],
"unavailable": [{name, why}]}. Archives are laid out like the lab mirror (<www>/kubesalt.lab/images/conformance/...)
and reach the nodes through the formula's own preload (k8s:container_runtime:images, pillar written by
tests/lab/labctl/conformance.py). Cached under <cache>/lab/conformance/<key>, keyed by this script, oci_image.py, the
e2e build's SHA256SUMS and the exact .deb files; archives are reproducible (fixed mtimes, owners, gzip headers).
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import debs  # noqa: E402
import oci_image  # noqa: E402

SUITE = "bookworm"
IMAGE_HOST = "kubesalt.lab"  # upstream-shaped URLs, like artifacts.py: https://kubesalt.lab/images/conformance/<file>
LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "usr/lib64", "lib", "usr/lib")

# What each part takes from Debian: {part: ([packages apt resolves], [paths taken, with their libraries])}.
DEBIAN_PARTS = {
    "dash": (["dash"], ["bin/dash"]),
    "agnhost-tools": (["curl", "netcat-openbsd", "iproute2", "iperf", "bash"],
                      ["usr/bin/curl", "bin/nc.openbsd", "bin/ip", "bin/ss", "usr/bin/iperf", "bin/bash"]),
    "httpd": (["apache2-bin"],
              ["usr/sbin/apache2"] + [f"usr/lib/apache2/modules/mod_{m}.so"
                                      for m in ("mpm_event", "authz_core", "mime", "dir")]),
    "nginx": (["nginx"], ["usr/sbin/nginx"]),
    "etcd": (["etcd-server", "etcd-client"], ["usr/bin/etcd", "usr/bin/etcdctl"]),
}

HTTPD_CONF = """\
# kubesalt conformance image: Debian's apache2 laid out like the official httpd image (ServerRoot /usr/local/apache2).
ServerRoot "/usr/local/apache2"
Listen 80
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
User daemon
Group daemon
ServerName localhost
DefaultRuntimeDir logs
PidFile logs/httpd.pid
DocumentRoot "/usr/local/apache2/htdocs"
<Directory />
    AllowOverride none
    Require all denied
</Directory>
<Directory "/usr/local/apache2/htdocs">
    Require all granted
</Directory>
DirectoryIndex index.html
TypesConfig conf/mime.types
ErrorLog /proc/self/fd/2
LogLevel warn
LogFormat "%h %l %u %t \\"%r\\" %>s %b" common
CustomLog /proc/self/fd/1 common
"""

NGINX_CONF = """\
# kubesalt conformance image: Debian's nginx laid out like the official nginx image.
user nobody nogroup;
worker_processes 1;
error_log stderr warn;
pid /run/nginx.pid;
events { worker_connections 1024; }
http {
    types { text/html html; }
    default_type application/octet-stream;
    access_log /dev/stdout;
    server {
        listen 80;
        root /usr/share/nginx/html;
        index index.html;
    }
}
"""

# Every image the [Conformance] tests of 1.20.2 start, by the reference test/utils/image/manifest.go gives it.
# layers: lowest first; images sharing a layer share its blob (containerd stores it once).
IMAGES = [
    {"name": "docker.io/library/busybox:1.29", "layers": ["busybox"], "cmd": ["sh"],
     "from": "busybox-static (Debian)"},
    {"name": "k8s.gcr.io/e2e-test-images/agnhost:2.21", "layers": ["busybox", "dash", "agnhost-tools", "agnhost"],
     "entrypoint": ["/agnhost"], "cmd": ["pause"],
     "from": "agnhost of the 1.20.2 tree on busybox + Debian curl, netcat-openbsd, iproute2, iperf, bash"},
    {"name": "gcr.io/kubernetes-e2e-test-images/nautilus:1.0",
     "layers": ["busybox", "dash", "agnhost-tools", "agnhost", "nautilus"], "entrypoint": ["/agnhost"],
     "cmd": ["test-webserver"], "from": "the agnhost image + the tree's test/images/nautilus/html"},
    {"name": "docker.io/library/httpd:2.4.38-alpine", "layers": ["busybox", "dash", "httpd"],
     "cmd": ["httpd-foreground"], "workdir": "/usr/local/apache2", "from": "Debian apache2-bin (2.4) on busybox"},
    {"name": "docker.io/library/httpd:2.4.39-alpine", "layers": ["busybox", "dash", "httpd"],
     "cmd": ["httpd-foreground"], "workdir": "/usr/local/apache2", "from": "Debian apache2-bin (2.4) on busybox"},
    {"name": "docker.io/library/nginx:1.14-alpine", "layers": ["busybox", "dash", "nginx"],
     "cmd": ["nginx", "-g", "daemon off;"], "from": "Debian nginx on busybox"},
    {"name": "docker.io/library/nginx:1.15-alpine", "layers": ["busybox", "dash", "nginx"],
     "cmd": ["nginx", "-g", "daemon off;"], "from": "Debian nginx on busybox"},
    {"name": "k8s.gcr.io/etcd:3.4.13-0", "layers": ["busybox", "dash", "etcd"], "cmd": ["/usr/local/bin/etcd"],
     "from": "Debian etcd-server 3.4 on busybox"},
    {"name": "gcr.io/kubernetes-e2e-test-images/sample-apiserver:1.17", "layers": ["busybox", "sample-apiserver"],
     "entrypoint": ["/sample-apiserver"], "from": "k8s.io/sample-apiserver of the 1.20.2 tree on busybox"},
    {"name": "gcr.io/kubernetes-e2e-test-images/nonewprivs:1.0", "layers": ["busybox", "nonewprivs"],
     "cmd": ["nnp"], "from": "test/images/nonewprivs of the 1.20.2 tree (setuid root) on busybox"},
]

# Images [Conformance] tests name that cannot be made here, and why (the tests that need them are listed as not
# runnable in tests/lab/conformance.json).
UNAVAILABLE = [
    {"name": "k8s.gcr.io/coredns:1.7.0",
     "why": "CoreDNS is not packaged by Debian and cannot be downloaded here: the lab has no cluster DNS"},
    {"name": "gcr.io/kubernetes-e2e-test-images/jessie-dnsutils:1.0",
     "why": "the DNS tests' client image; useless without cluster DNS (see coredns)"},
]


def say(msg):
    print(f"[conformance-images] {msg}", file=sys.stderr, flush=True)


def file_name(ref):
    """docker.io/library/httpd:2.4.38-alpine -> httpd-2.4.38-alpine.tar"""
    return ref.rsplit("/", 1)[-1].replace(":", "-") + ".tar"


# -- programs with their shared libraries ------------------------------------------------------------------------------
def _elf_deps(path):
    """(interpreter or None, [DT_NEEDED sonames]) of an ELF file; (None, []) for anything else."""
    with open(path, "rb") as fh:
        if fh.read(4) != b"\x7fELF":
            return None, []
    dyn = subprocess.run(["readelf", "-dW", path], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
    prog = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, check=True).stdout
    interp = re.search(r"Requesting program interpreter: ([^\]]+)\]", prog)
    return (interp.group(1) if interp else None), needed


def _inside(root, rel):
    return os.path.join(root, rel.lstrip("/"))


# Loaded by glibc with dlopen, not named in any ELF header: libgcc_s for thread exit and cancellation ("libgcc_s.so.1
# must be installed for pthread_exit to work", then abort -- apache's workers did).
GLIBC_DLOPENS = ("lib/x86_64-linux-gnu/libgcc_s.so.1",)


def closure(root, paths):
    """Entries of ``paths`` (relative to the extracted tree ``root``) and every shared library they need, recursively:
    {path in image: ("file", host path, mode) | ("link", target)}. Symlinks are kept as symlinks and followed."""
    entries = {}
    todo = list(paths)
    while todo:
        rel = todo.pop().lstrip("/")
        if rel in entries:
            continue
        host = _inside(root, rel)
        if os.path.islink(host):
            target = os.readlink(host)
            entries[rel] = ("link", target)
            todo.append(target if target.startswith("/") else os.path.normpath(os.path.join(os.path.dirname(rel),
                                                                                              target)))
            continue
        if not os.path.isfile(host):
            raise SystemExit(f"conformance_images.py: {rel} is not in the extracted packages")
        entries[rel] = ("file", host, os.stat(host).st_mode & 0o7777)
        interp, needed = _elf_deps(host)
        if interp:
            todo.append(interp)
        if "libc.so.6" in needed:
            todo.extend(GLIBC_DLOPENS)
        for soname in needed:
            found = next((f"{d}/{soname}" for d in LIB_DIRS if os.path.lexists(_inside(root, f"{d}/{soname}"))), None)
            if not found:
                raise SystemExit(f"conformance_images.py: {rel} needs {soname}, which no resolved package ships")
            todo.append(found)
    return entries


def debian_part(cache, work, name):
    """(entries, {package: .deb path}) of DEBIAN_PARTS[name]: the packages apt resolves, extracted, then the
    closure of the paths taken."""
    packages, take = DEBIAN_PARTS[name]
    resolved = debs.resolve(cache, SUITE, packages)
    fetched = debs.fetch(cache, SUITE, resolved)
    root = os.path.join(work, "deb-" + name)
    os.makedirs(root)
    for path in sorted(fetched.values()):
        subprocess.run(["dpkg-deb", "-x", path, root], check=True)
    return closure(root, take), fetched


def entries_layer(entries, files=(), symlinks=(), dirs=()):
    """A layer of closure() entries plus extra files/symlinks/dirs (oci_image.layer_tar's shapes)."""
    f = [(src, dest, mode) for dest, (kind, *rest) in sorted(entries.items()) if kind == "file"
         for src, mode in [rest]]
    s = [(dest, rest[0]) for dest, (kind, *rest) in sorted(entries.items()) if kind == "link"]
    return oci_image.layer_tar(f + list(files), s + list(symlinks), dirs)


# -- the layers --------------------------------------------------------------------------------------------------------
def busybox_applets(busybox):
    """Every applet path the binary knows (usr/bin/wget, sbin/ip, ...), but linuxrc."""
    out = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True).stdout
    return sorted(p for p in out.split() if p and p != "linuxrc" and p != "bin/busybox")


def build_layers(cache, e2e, work):
    """{layer name: uncompressed tar} and {package: .deb path} of every .deb used."""
    used = {}
    busybox_deb = debs.fetch(cache, SUITE, ["busybox-static"])["busybox-static"]
    used["busybox-static"] = busybox_deb
    bb_root = os.path.join(work, "busybox")
    subprocess.run(["dpkg-deb", "-x", busybox_deb, bb_root], check=True)
    busybox = os.path.join(bb_root, "bin/busybox")
    applets = busybox_applets(busybox)
    passwd = (b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
              b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    group = b"root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n"
    layers = {
        "busybox": oci_image.layer_tar(
            [(busybox, "bin/busybox", 0o755), (passwd, "etc/passwd", 0o644), (group, "etc/group", 0o644),
             (b"hosts: files dns\n", "etc/nsswitch.conf", 0o644)],
            symlinks=[(a, "/bin/busybox") for a in applets],
            dirs=[("tmp", 0o1777), ("root", 0o700), ("home", 0o755), ("var", 0o755), ("run", 0o755),
                  ("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("usr/local/bin", 0o755)]),
    }

    def shadow(name, target):
        """Symlinks that put ``target`` in front of every busybox applet called ``name`` (whatever PATH order)."""
        return [(a, target) for a in applets if os.path.basename(a) == name]

    # /bin/sh of the images that add Debian programs: dash. Debian's static busybox shell runs its own applet for any
    # command it has one for (`ip`, `httpd`, `nc` in a script would be busybox's, whatever PATH says); alpine's shell
    # (the upstream images' base) runs what PATH finds, and so does dash.
    dash, fetched = debian_part(cache, work, "dash")
    used.update(fetched)
    layers["dash"] = entries_layer(dash, symlinks=shadow("sh", "dash"))

    tools, fetched = debian_part(cache, work, "agnhost-tools")
    used.update(fetched)
    links = shadow("nc", "/bin/nc.openbsd") + shadow("ip", "/bin/ip")
    links += [("bin/nc", "nc.openbsd"), ("usr/local/bin/iperf", "/usr/bin/iperf")]
    layers["agnhost-tools"] = entries_layer(tools, symlinks=links)
    porter = os.path.join(e2e, "agnhost")
    layers["agnhost"] = oci_image.layer_tar(
        [(os.path.join(e2e, "bin/agnhost"), "agnhost", 0o755),
         (os.path.join(porter, "localhost.crt"), "localhost.crt", 0o644),
         (os.path.join(porter, "localhost.key"), "localhost.key", 0o644)],
        symlinks=[("agnhost-2", "agnhost")], dirs=[("uploads", 0o755)])
    html = os.path.join(e2e, "nautilus")
    layers["nautilus"] = oci_image.layer_tar([(os.path.join(html, f), f, 0o644)
                                              for f in ("nautilus.jpg", "data.json")])

    apache, fetched = debian_part(cache, work, "httpd")
    used.update(fetched)
    wrapper = b'#!/bin/sh\nexec /usr/sbin/apache2 -d /usr/local/apache2 -f conf/httpd.conf "$@"\n'
    foreground = (b"#!/bin/sh\nset -e\nrm -f /usr/local/apache2/logs/httpd.pid\n"
                  b'exec /usr/local/apache2/bin/httpd -DFOREGROUND "$@"\n')
    layers["httpd"] = entries_layer(
        apache,
        files=[(HTTPD_CONF.encode(), "usr/local/apache2/conf/httpd.conf", 0o644),
               (b"text/html html htm\ntext/plain txt\napplication/json json\nimage/jpeg jpeg jpg\n",
                "usr/local/apache2/conf/mime.types", 0o644),
               (b"<html><body><h1>It works!</h1></body></html>\n", "usr/local/apache2/htdocs/index.html", 0o644),
               (wrapper, "usr/local/apache2/bin/httpd", 0o755), (foreground, "usr/local/bin/httpd-foreground", 0o755)],
        symlinks=[("usr/local/bin/httpd", "/usr/local/apache2/bin/httpd")] + shadow("httpd", "/usr/local/bin/httpd"),
        dirs=[("usr/local/apache2/logs", 0o755)])

    nginx, fetched = debian_part(cache, work, "nginx")
    used.update(fetched)
    layers["nginx"] = entries_layer(
        nginx,
        files=[(NGINX_CONF.encode(), "etc/nginx/nginx.conf", 0o644),
               (b"<html><body><h1>Welcome to nginx!</h1></body></html>\n", "usr/share/nginx/html/index.html",
                0o644)],
        dirs=[("var/log/nginx", 0o755), ("var/lib/nginx", 0o755), ("var/cache/nginx", 0o755)])

    etcd, fetched = debian_part(cache, work, "etcd")
    used.update(fetched)
    layers["etcd"] = entries_layer(etcd, symlinks=[("usr/local/bin/etcd", "/usr/bin/etcd"),
                                                   ("usr/local/bin/etcdctl", "/usr/bin/etcdctl")])

    layers["sample-apiserver"] = oci_image.layer_tar([(os.path.join(e2e, "bin/sample-apiserver"),
                                                       "sample-apiserver", 0o755)])
    layers["nonewprivs"] = oci_image.layer_tar([(os.path.join(e2e, "bin/nonewprivs"), "usr/local/bin/nnp", 0o4755)])
    return layers, used


# -- the build ---------------------------------------------------------------------------------------------------------
def inputs_key(cache, e2e):
    """Digest of what the archives are made of: this script, oci_image.py, the e2e build and the exact .debs (their
    file names carry the versions). Resolving the .debs needs only the suite's apt lists (cached)."""
    h = hashlib.sha256()
    for path in (__file__, oci_image.__file__, os.path.join(e2e, "SHA256SUMS")):
        with open(path, "rb") as fh:
            h.update(fh.read())
    names = {"busybox-static"}
    for packages, _ in DEBIAN_PARTS.values():
        names.update(debs.resolve(cache, SUITE, packages))
    for path in sorted(debs.fetch(cache, SUITE, sorted(names)).values()):
        h.update(os.path.basename(path).encode())
    return h.hexdigest()[:12]


def build(cache, k8s_version):
    e2e = os.path.join(cache, "kubernetes", f"{k8s_version}-e2e")
    if not os.path.exists(os.path.join(e2e, ".complete")):
        raise SystemExit(f"conformance_images.py: no e2e build in {e2e} (run tests/lab/build/kubernetes.sh e2e)")
    key = f"{k8s_version}-{inputs_key(cache, e2e)}"
    out = os.path.join(cache, "lab", "conformance", key)
    index, tmp = oci_image.start_build(out, "images.json", say)
    if tmp is None:
        return index
    work = tempfile.mkdtemp(prefix="kubesalt-conformance-images-")
    try:
        layers, used = build_layers(cache, e2e, work)
        images = []
        for spec in IMAGES:
            image = oci_image.write_image(
                os.path.join(tmp, "www"), f"{IMAGE_HOST}/images/conformance/{file_name(spec['name'])}", spec["name"],
                [layers[n] for n in spec["layers"]], entrypoint=spec.get("entrypoint"), cmd=spec.get("cmd"),
                workdir=spec.get("workdir", "/"))
            images.append({**image, "from": spec["from"]})
            say(f"{spec['name']}: {image['size'] / 1048576:.1f} MiB ({spec['from']})")
        manifest = {"key": key, "www": os.path.join(out, "www"), "kubernetes": k8s_version, "suite": SUITE,
                    "images": images, "unavailable": UNAVAILABLE,
                    "debs": {p: debs.deb_field(path) for p, path in sorted(used.items())}}
        oci_image.publish(tmp, out, "images.json", manifest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"built: {out}")
    return index


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=os.environ.get("KUBESALT_CACHE", "/var/cache/kubesalt"))
    p.add_argument("--kubernetes", default="1.20.2")
    args = p.parse_args()
    print(build(args.cache, args.kubernetes))


if __name__ == "__main__":
    main()
