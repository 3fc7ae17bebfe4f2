#!/usr/bin/env python3
"""
Benchmark of k8s_pki: issue the full certificate set of a cluster (3 masters that are etcd members + 100 workers by
default, network mode flannel so every node also gets its flannel etcd client), per key type. Prints figures,
asserts nothing.

Three figures per key type:

1. core:    in memory, no files and no Salt: per certificate a node key, a CSR, and the CA's signature
            (``generate_private_key`` -> ``create_csr`` -> ``sign_certificate``).
2. states:  the path a highstate takes, on one machine: per certificate ``k8s_pki.certificate_managed`` on the node
            (key generated and written, CSR) -> ``k8s_pki.sign_remote`` on the CA minion (settings, entitlement,
            CSR check, CA key read from its 0700 directory, signing) -> reply checked -> files written atomically
            (fsync + rename). The salt-master's peer publish hop is replaced by a direct call (tests/support).
3. no-op:   the same states again: every certificate is compared with the policy and kept.

The settings (``k8s.settings``) are computed and the modules loaded once per minion before timing, so the figures
are PKI work and file I/O.
A real CA minion also resolves its settings for each ``sign_remote`` (``k8s.config`` renders map.jinja); the cost of
``k8s.settings`` alone for this inventory is printed as its own line.

Usage:  .venv/bin/python bench/pki_issue.py [--masters 3] [--workers 100] [--key-types ecdsa-p256,rsa-2048]
                                            [--network flannel|routes]
"""

import argparse
import functools
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "_utils")]

from kubesalt import x509  # noqa: E402  (after the path setup)
from tests.support.pki_fixtures import Cluster  # noqa: E402


def inventory(masters, workers):
    nodes = {}
    for i in range(1, masters + 1):
        nodes[f"master{i:02d}"] = {
            "roles": ["master", "etcd"],
            "ip": f"10.240.0.{i}",
            "names": [f"master{i:02d}.lab.example"],
        }
    for i in range(1, workers + 1):
        nodes[f"worker{i:03d}"] = {
            "roles": ["worker"],
            "ip": f"10.240.{1 + i // 250}.{i % 250 + 1}",
            "names": [f"worker{i:03d}.lab.example"],
        }
    return nodes


def plan(cluster):
    """[(minion, identity, entitlement)] for every certificate of the cluster."""
    exe = cluster.execution(cluster.ca_minion)
    config = cluster.config(cluster.ca_minion)
    return [(m, i, e) for m in cluster.pillar["nodes"] for i, e in exe.entitlements(config, m).items()]


def core(cluster, work, key_type):
    ca_key = {ca: x509.generate_private_key(key_type) for ca in ("kubernetes-ca", "etcd-ca", "front-proxy-ca")}
    ca_cert = {ca: x509.create_ca(key, ca) for ca, key in ca_key.items()}
    start = time.perf_counter()
    for _, _, ent in work:
        key = x509.generate_private_key(key_type)
        csr = x509.create_csr(key, ent["cn"], ent["o"], ent["dns"], ent["ips"])
        x509.sign_certificate(
            ca_cert[ent["ca"]], ca_key[ent["ca"]], csr, ent["cn"], ent["o"], ent["dns"], ent["ips"], ent["usages"]
        )
    return time.perf_counter() - start


def through_states(cluster, work):
    start = time.perf_counter()
    for minion, identity, _ in work:
        ret = cluster.issue(minion, identity)
        if ret["result"] is not True:
            raise SystemExit(f"{minion} {identity}: {ret['comment']}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--key-types", default="ecdsa-p256,rsa-2048")
    parser.add_argument("--network", default="flannel", choices=("flannel", "routes"))
    args = parser.parse_args()

    print(f"cluster: {args.masters} masters (+etcd), {args.workers} workers, network mode {args.network}")
    print(
        f"{'key type':<12} {'certs':>6} {'core s':>8} {'ms/cert':>8} {'states s':>9} {'ms/cert':>8} "
        f"{'no-op s':>8} {'ms/cert':>8}"
    )
    for key_type in args.key_types.split(","):
        with tempfile.TemporaryDirectory(prefix="pki-bench-") as tmp:
            cluster = Cluster(
                tmp, nodes=inventory(args.masters, args.workers), key_type=key_type, network_mode=args.network
            )
            ca_minion = cluster.ca_minion
            start = time.perf_counter()
            cluster.config(ca_minion)
            t_settings = time.perf_counter() - start
            cluster.config = functools.lru_cache(maxsize=None)(cluster.config)  # the pillar does not change here
            cluster.create_cas()
            for minion in cluster.pillar["nodes"]:  # a running minion has its modules and settings loaded already
                cluster.config(minion)
                cluster.states(minion)
            work = plan(cluster)
            n = len(work)
            t_core = core(cluster, work, key_type)
            t_states = through_states(cluster, work)
            t_noop = through_states(cluster, work)
            print(
                f"{key_type:<12} {n:>6} {t_core:>8.2f} {1000 * t_core / n:>8.1f} {t_states:>9.2f} "
                f"{1000 * t_states / n:>8.1f} {t_noop:>8.2f} {1000 * t_noop / n:>8.1f}"
            )
    print(f"k8s.settings for this inventory: {1000 * t_settings:.1f} ms per call (not included above)")


if __name__ == "__main__":
    main()
