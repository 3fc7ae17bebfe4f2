#!/usr/bin/env python3
"""
Benchmark: what one no-op ``state.apply k8s.worker`` costs, side by side for several checkouts on the same machine.
Prints figures, asserts nothing.

One render-only cluster of the scale benchmark (``bench/scale_workers.py``: a real salt-master, the CA minion and one
worker, ``k8s:manage_services: false``) serves each checkout's ``formulas/`` in turn (the master's file root is a
link switched between them; modules synced again each time); the worker converges once, then ``state.apply
k8s.worker`` runs ``--runs`` times with 0 changes. For each checkout, two rounds (alternating, so a busy machine
weighs on both): wall time per run and the CPU-seconds of the worker's minion, the salt-master and the CA minion.

Usage:  .venv/bin/python bench/noop_state.py [--runs 4] CHECKOUT [CHECKOUT ...]
        (e.g. a `git worktree add /tmp/main main` next to this one)
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import scale_workers as sw  # noqa: E402

from tests.integration.conftest import mirror_tree  # noqa: E402
from tests.support.httpserver import LocalHTTPServer  # noqa: E402


def serve(cluster, link, checkout):
    """Point the master's file root at ``checkout``'s formulas and bring both minions onto its modules."""
    if link.is_symlink():
        link.unlink()
    link.symlink_to(pathlib.Path(checkout).resolve() / "formulas")
    # The master keeps its file lists for fileserver_list_cache_time (20 s by default): drop them with the switch.
    subprocess.run(
        [str(sw.VENV / "salt-run"), "-c", str(cluster.master_dir / "conf"), "fileserver.clear_file_list_cache"],
        capture_output=True,
        check=True,
    )
    cluster.salt("*", "saltutil.clear_cache")
    cluster.salt("*", "saltutil.sync_all")
    cluster.salt("master01", "state.apply", "k8s.pki")
    cluster.salt("worker001", "state.apply", "k8s.worker")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+")
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    base = pathlib.Path(tempfile.mkdtemp(prefix="kubesalt-noop-"))
    pins = mirror_tree(base / "mirror")
    server = LocalHTTPServer().start()
    server.serve_directory("/", str(base / "mirror"))
    cluster = sw.Cluster(base, 1, server.base_url, pins)
    link = base / "served"
    link.symlink_to(pathlib.Path(args.checkouts[0]).resolve() / "formulas")
    cluster.master_conf["file_roots"] = {"base": [str(link)]}
    (cluster.master_dir / "conf" / "master").write_text(yaml.safe_dump(cluster.master_conf))
    try:
        cluster.start()
        for round_ in (1, 2):
            for checkout in args.checkouts:
                serve(cluster, link, checkout)
                cpu0, t0 = cluster.cpu(), time.time()
                results = [
                    sw.summarize(cluster.salt("worker001", "state.apply", "k8s.worker")) for _ in range(args.runs)
                ]
                master, ca, worker = (b - a for a, b in zip(cpu0, cluster.cpu(), strict=True))
                changes = sum(r[1] for r in results)
                print(
                    f"round {round_} {checkout}: no-op state.apply k8s.worker {(time.time() - t0) / args.runs:.2f} s "
                    f"wall; CPU-s per run: worker minion {worker / args.runs:.3f}, salt-master "
                    f"{master / args.runs:.3f}, CA minion {ca / args.runs:.3f}; {changes} changes",
                    flush=True,
                )
    finally:
        cluster.stop()
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
