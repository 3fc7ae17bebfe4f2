#!/usr/bin/env python3
"""
Benchmark of the k8s_artifact module against a local HTTP server on 127.0.0.1 (prints figures, asserts nothing).

1. Throughput: a random file (100 MB by default) is downloaded, hashed while streaming and installed atomically
   (temp file, fsync, rename), and compared with ``sha256sum`` over the same file (already in the page cache).
   Three variants: no cache; cold cache (download into the cache, then a verified copy to the destination); warm
   cache (verified copy only).
2. Re-apply: every worker artifact (kubelet, kube-proxy, runc, containerd, cni-plugins, crictl) is installed from
   fake artifacts of roughly real size, pinned through k8s:artifacts:pins, through the same resolve -> install /
   extract path the formulas use; then the no-op re-apply is timed and its HTTP requests counted.

Usage:  .venv/bin/python bench/artifact_throughput.py [--size-mb 100] [--scale 1.0] [--repeat 3]
"""

import argparse
import hashlib
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.httpserver import LocalHTTPServer  # noqa: E402
from tests.support.loader import load  # noqa: E402

MB = 1e6
# Approximate sizes (MB) of the real linux/amd64 files, by the name they are installed as.
WORKER_FILES = {
    "kubelet": {"kubelet": 58},
    "kube-proxy": {"kube-proxy": 43},
    "runc": {"runc": 12},
    "containerd": {"containerd": 40, "containerd-shim-runc-v2": 9, "ctr": 20},
    "cni-plugins": {"bridge": 5, "host-local": 4, "loopback": 4, "portmap": 5},
    "crictl": {"crictl": 40},
}


def random_file(path, size):
    with open(path, "wb") as fh:
        left = int(size)
        while left > 0:
            chunk = os.urandom(min(left, 8 << 20))
            fh.write(chunk)
            left -= len(chunk)


def sha256_file(path):
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def best(repeat, func):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def throughput(art, server, work, size_mb, repeat):
    big = work / "big.bin"
    random_file(big, size_mb * MB)
    digest = sha256_file(big)
    url = server.serve_file("/big.bin", str(big))
    size = big.stat().st_size / MB

    sha256sum = best(repeat, lambda: subprocess.run(["sha256sum", str(big)], check=True, capture_output=True))
    hashlib_only = best(repeat, lambda: sha256_file(big))

    dest = work / "dest" / "big"

    def fresh(cache):
        def run():
            if dest.exists():
                dest.unlink()
            if cache and os.path.isdir(cache):
                shutil.rmtree(cache)
            art.install(str(dest), url, digest, cache_dir=cache, user=None, group=None)

        return run

    no_cache = best(repeat, fresh(None))
    cold = best(repeat, fresh(str(work / "cache")))
    fresh(str(work / "cache"))()

    def warm():
        dest.unlink()
        art.install(str(dest), url, digest, cache_dir=str(work / "cache"), user=None, group=None)

    warm_t = best(repeat, warm)
    noop = best(
        repeat, lambda: art.install(str(dest), url, digest, cache_dir=str(work / "cache"), user=None, group=None)
    )
    print(f"file: {size:.0f} MB random data, served by tests/support/httpserver.py on 127.0.0.1 (best of {repeat})")
    rows = [
        ("sha256sum (page cache)", sha256sum),
        ("hashlib sha256 only (page cache)", hashlib_only),
        ("download + verify + install, no cache", no_cache),
        ("download into cache + verified copy (cold)", cold),
        ("verified copy from cache (warm)", warm_t),
        ("no-op re-apply (hash installed file)", noop),
    ]
    for label, seconds in rows:
        print(f"  {label:<46} {seconds:7.3f} s  {size / seconds:8.1f} MB/s")
    print(
        f"  ratio download+verify (no cache) / sha256sum: {sha256sum / no_cache:.2f}; "
        f"/ hashlib alone: {hashlib_only / no_cache:.2f}"
    )
    print(
        "  (a ratio of 1.00 means downloading, verifying and installing costs no more than hashing the file; "
        "sha256sum and hashlib differ when only one of them uses the CPU's SHA instructions)"
    )
    big.unlink()


def tarball(path, files, scale):
    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        for name, size in files.items():
            data = os.urandom(int(size * MB * scale))
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tf.addfile(info, io.BytesIO(data))


def worker_reapply(art, server, work, scale):
    k8s = load("k8s")
    data = {
        n: yaml.safe_load((ROOT / "formulas" / "k8s" / n).read_text())
        for n in ("defaults.yaml", "profiles.yaml", "catalogue.yaml")
    }
    upstream = work / "upstream"
    upstream.mkdir()
    pins = {}
    for component, files in WORKER_FILES.items():
        entry = data["catalogue.yaml"]["components"][component]
        version = data["defaults.yaml"]["k8s"]["versions"][entry["version_key"]]
        path = upstream / component
        if entry["type"] == "archive":
            # The catalogue's member templates decide the paths inside the archive.
            tarball(
                path,
                {entry["members"][dest].format(version=version, arch="amd64"): size for dest, size in files.items()},
                scale,
            )
        else:
            random_file(path, files[component] * MB * scale)
        server.serve_file(f"/upstream/{component}", str(path))
        pins[component] = {
            version: {"amd64": {"sha256": sha256_file(path), "url": server.url(f"/upstream/{component}")}}
        }
    pillar = {
        "nodes": {"worker01": {"roles": ["worker"], "ip": "10.240.0.21"}},
        "fs_root": str(work / "root"),
        "artifacts": {"pins": pins},
    }
    config = k8s.settings(
        data["defaults.yaml"]["k8s"], data["profiles.yaml"], pillar, data["catalogue.yaml"], validate=False
    )
    components = k8s.needed_components(config)
    total = sum(os.path.getsize(upstream / c) for c in components) / MB

    def apply():
        changed = 0
        for component in components:
            a = art.resolve(component, config)
            common = {
                "digest": a["digest"],
                "hash_type": a["hash_type"],
                "cache_dir": config["artifacts"]["cache_dir"],
                "user": None,
                "group": None,
            }
            if a["type"] == "archive":
                dest = config["paths"]["cni_bin_dir" if component == "cni-plugins" else "bin_dir"]
                result = art.extract(dest, a["url"], a["members"], **common)
            else:
                result = art.install(os.path.join(config["paths"]["bin_dir"], component), a["url"], **common)
            changed += len(result["changes"])
        return changed

    server.reset_counts()
    start = time.perf_counter()
    changed = apply()
    first = time.perf_counter() - start
    requests_first = server.count()
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        again = apply()
        timings.append(time.perf_counter() - start)
    print(f"worker artifacts: {', '.join(components)} ({total:.0f} MB of artifacts, scale {scale})")
    print(f"  first apply:   {first:7.3f} s, {changed} file(s) changed, {requests_first} HTTP request(s)")
    print(
        f"  no-op re-apply: {min(timings):6.3f} s (best of 3; median {sorted(timings)[1]:.3f} s), {again} "
        f"change(s), {server.count() - requests_first} HTTP request(s)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--scale", type=float, default=1.0, help="scale of the fake worker artifacts' sizes")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        os.environ.pop(var, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    art = load("k8s_artifact")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)")
    with tempfile.TemporaryDirectory(prefix="k8s-artifact-bench-") as tmp, LocalHTTPServer() as server:
        work = pathlib.Path(tmp)
        throughput(art, server, work, args.size_mb, args.repeat)
        worker_reapply(art, server, work, args.scale)


if __name__ == "__main__":
    main()
