#!/usr/bin/env python3
"""
Benchmark on the running lab (`make lab` first): wall time of `salt-run state.orchestrate k8s.cluster` per step, and
of the no-op re-runs -- the orchestration again and `state.highstate` on every node -- with their total change
counts. Prints figures, asserts nothing.

A converge from scratch is `make lab-down && make lab` (its summary prints the orchestrate phase); this script
measures what a re-run costs on a converged cluster.

Usage:  .venv/bin/python bench/lab_converge.py [--runs 2]
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAB = ["bash", str(ROOT / "tests/lab/lab.sh")]


def timed(*args):
    t0 = time.monotonic()
    out = subprocess.run(LAB + list(args), capture_output=True, text=True, timeout=3600)
    elapsed = time.monotonic() - t0
    if out.returncode != 0:
        sys.exit(f"lab.sh {' '.join(args)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return elapsed, json.loads(out.stdout)


def orchestrate_figures(data):
    steps = next(iter(data["data"].values()))
    rows, changes = [], 0
    for step in sorted(steps.values(), key=lambda s: s["__run_num__"]):
        n = 0
        for states in ((step.get("changes") or {}).get("ret") or {}).values():
            if isinstance(states, list):  # saltutil.sync_*: the modules it had to sync
                n += len(states)
            elif isinstance(states, dict):
                n += sum(1 for s in states.values() if isinstance(s, dict) and s.get("changes"))
        changes += n
        rows.append((step["__id__"], step.get("duration", 0) / 1000.0, n, step["result"]))
    return rows, changes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="no-op orchestrations to time")
    args = parser.parse_args()
    for run in range(1, args.runs + 1):
        wall, data = timed("salt-run", "--out=json", "state.orchestrate", "k8s.cluster")
        rows, changes = orchestrate_figures(data)
        print(f"orchestrate re-run {run}: {wall:.1f} s wall, {changes} state changes on the minions")
        for sid, seconds, n, ok in rows:
            print(f"    {seconds:7.1f} s  {n:3d} changes  {'ok ' if ok else 'FAIL'}  {sid}")
    wall, data = timed("salt", "--out=json", "--static", "-C", "G@role:master or G@role:worker", "state.highstate")
    changes = sum(
        1 for states in data.values() for s in (states or {}).values() if isinstance(s, dict) and s.get("changes")
    )
    print(f"state.highstate on {len(data)} nodes: {wall:.1f} s wall, {changes} state changes")


if __name__ == "__main__":
    main()
