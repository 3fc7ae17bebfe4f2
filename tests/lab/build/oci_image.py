#!/usr/bin/env python3
"""Write a single-layer container image as an OCI image-layout tar (what `ctr images import` and
`docker load`/`podman load` read), without any container tooling. Output is byte-for-byte reproducible: fixed mtimes,
owners and gzip header, so the archive's sha256 only changes when its content does.

    oci_image.py --ref k8s.gcr.io/pause:3.2 --out pause.tar --add /tmp/pause:/pause:0755 --entrypoint '["/pause"]'

Archive layout: oci-layout, index.json (one manifest, platform linux/<arch>, annotations
org.opencontainers.image.ref.name and io.containerd.image.name both holding the full reference), blobs/sha256/<hex>
(manifest, config, gzip layer).
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

EPOCH = 0  # every mtime in the layer and in the archive


def _info(name, kind, mode, size=0, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = linkname
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def layer_tar(files, symlinks=(), dirs=()):
    """files: [(host path or the content as bytes, path in image, mode)], symlinks: [(path in image, target)],
    dirs: [(path, mode)]. Return the uncompressed layer tar (parent directories added, entries sorted)."""
    entries = {}
    for path, mode in dirs:
        entries[path.strip("/")] = ("dir", mode, None)
    for src, dest, mode in files:
        if isinstance(src, bytes):
            entries[dest.strip("/")] = ("file", mode, src)
            continue
        with open(src, "rb") as fh:
            entries[dest.strip("/")] = ("file", mode, fh.read())
    for dest, target in symlinks:
        entries[dest.strip("/")] = ("link", 0o777, target)
    for name in list(entries):
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            entries.setdefault("/".join(parts[:i]), ("dir", 0o755, None))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            kind, mode, data = entries[name]
            if kind == "dir":
                tar.addfile(_info(name + "/", tarfile.DIRTYPE, mode))
            elif kind == "link":
                tar.addfile(_info(name, tarfile.SYMTYPE, mode, linkname=data))
            else:
                tar.addfile(_info(name, tarfile.REGTYPE, mode, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def _gzip(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=EPOCH, compresslevel=6, filename="") as gz:
        gz.write(data)
    return buf.getvalue()


def _blob(blobs, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest, len(data)


def image_archive(ref, layer, entrypoint=None, cmd=None, env=None, arch="amd64", workdir="/", user=None):
    """Return (archive bytes, manifest digest) of an OCI layout tar holding one image. ``layer`` is one uncompressed
    layer tar or a list of them, lowest first (images that share a lower layer share its blob)."""
    layers = [layer] if isinstance(layer, bytes) else list(layer)
    blobs = {}
    descriptors = []
    for data in layers:
        digest, size = _blob(blobs, _gzip(data))
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest,
                            "size": size})
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Env": env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "WorkingDir": workdir},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(data).hexdigest() for data in layers]},
        "history": [{"created_by": "kubesalt tests/lab/build/oci_image.py"} for _ in layers],
    }
    if user is not None:
        config["config"]["User"] = user
    if entrypoint is not None:
        config["config"]["Entrypoint"] = entrypoint
    if cmd is not None:
        config["config"]["Cmd"] = cmd
    config_digest, config_size = _blob(blobs, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": config_size},
        "layers": descriptors,
    }
    manifest_digest, manifest_size = _blob(blobs, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref},
        }],
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def put(name, data):
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, size=len(data)), io.BytesIO(data))
        tar.addfile(_info("blobs/", tarfile.DIRTYPE, 0o755))
        tar.addfile(_info("blobs/sha256/", tarfile.DIRTYPE, 0o755))
        for digest in sorted(blobs):
            put("blobs/sha256/" + digest.split(":", 1)[1], blobs[digest])
        put("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        put("index.json", json.dumps(index, sort_keys=True).encode())
    return out.getvalue(), manifest_digest


def write_image(www, rel, ref, layers, **kw):
    """Write the image ``ref`` (image_archive(ref, layers, **kw)) to ``www``/``rel``, served as https://``rel`` by the
    lab mirror; return its entry for the mirror's index: {name, path, url, sha256, manifest, size}."""
    data, digest = image_archive(ref, layers, **kw)
    dest = os.path.join(www, rel)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "wb") as fh:
        fh.write(data)
    return {"name": ref, "path": rel, "url": f"https://{rel}", "sha256": hashlib.sha256(data).hexdigest(),
            "manifest": digest, "size": len(data)}


def start_build(out, index_name, log):
    """A cached build in ``out``, complete when its ``index_name`` exists: (index path, None) when it is, else (index
    path, the fresh ``out``.tmp to build in, then publish())."""
    index = os.path.join(out, index_name)
    if os.path.exists(index):
        log(f"cached: {out}")
        return index, None
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    return index, tmp


def publish(tmp, out, index_name, index):
    """Finish a cached build made in ``tmp``: write ``index`` as JSON to ``tmp``/``index_name``, then put ``tmp`` in
    place of ``out`` (a reader sees the old tree, or none, or the whole new one)."""
    with open(os.path.join(tmp, index_name), "w") as fh:
        json.dump(index, fh, indent=1, sort_keys=True)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="full image reference, e.g. k8s.gcr.io/pause:3.2")
    p.add_argument("--out", required=True)
    p.add_argument("--add", action="append", default=[], metavar="SRC:DEST[:MODE]")
    p.add_argument("--symlink", action="append", default=[], metavar="DEST:TARGET")
    p.add_argument("--dir", action="append", default=[], metavar="DEST[:MODE]")
    p.add_argument("--entrypoint", type=json.loads)
    p.add_argument("--cmd", type=json.loads)
    p.add_argument("--arch", default="amd64")
    args = p.parse_args(argv)
    files = []
    for spec in args.add:
        src, dest, *mode = spec.split(":")
        files.append((src, dest, int(mode[0], 8) if mode else 0o755))
    links = [tuple(s.split(":", 1)) for s in args.symlink]
    dirs = []
    for spec in args.dir:
        dest, *mode = spec.split(":")
        dirs.append((dest, int(mode[0], 8) if mode else 0o755))
    data, digest = image_archive(args.ref, layer_tar(files, links, dirs), args.entrypoint, args.cmd, arch=args.arch)
    with open(args.out + ".tmp", "wb") as fh:
        fh.write(data)
    import os
    os.replace(args.out + ".tmp", args.out)
    print(json.dumps({"ref": args.ref, "file": args.out, "manifest": digest,
                      "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
