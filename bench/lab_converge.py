#!/usr/bin/env python3
"""
Benchmark on the running lab (`make lab` first): wall time of `salt-run state.orchestrate k8s.cluster` per step, and
of the no-op re-runs -- the orchestration again and `state.highstate` on every node -- with their total change
counts, and the CPU-seconds the lab's minions and salt-master spent (on this shared 2-core machine the minions'
CPU decides much of the wall time). Prints figures, asserts nothing.

A converge from scratch is `make lab-down && make lab` (its summary prints the orchestrate phase); this script
measures what a re-run costs on a converged cluster.

With --trees A,B (checkouts, e.g. a `git worktree` of main and this one) it compares them side by side on the same
lab, alternating for --rounds rounds: each switch restarts the lab master serving that tree (LAB_SALT_TREE, no
orchestration), runs one orchestration to sync its modules (reported as warm-up), then --runs timed no-op ones.

Usage:  .venv/bin/python bench/lab_converge.py [--runs 2] [--trees A,B --rounds 2]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAB = ["bash", str(ROOT / "tests/lab/lab.sh")]
LAB_JSON = os.path.join(os.environ.get("LAB_STATE", "/var/lib/kubesalt-lab"), "lab.json")


def lab_cpu():
    """CPU-seconds used so far by the lab's salt-minions (the nodes' /opt/kubesalt-salt, seen from the host) and its
    salt-master, each with the children it has reaped (the job processes)."""
    import psutil

    totals = {"minions": 0.0, "master": 0.0}
    for proc in psutil.process_iter(["cmdline", "cpu_times"]):
        cmdline, times = " ".join(proc.info["cmdline"] or []), proc.info["cpu_times"]
        if times is None:
            continue
        key = (
            "minions"
            if "/opt/kubesalt-salt/bin/salt-minion" in cmdline
            else "master"
            if "salt-master" in cmdline and "kubesalt-lab" in cmdline
            else None
        )
        if key:
            totals[key] += times.user + times.system + times.children_user + times.children_system
    return totals


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


def orchestrate(label):
    cpu0 = lab_cpu()
    wall, data = timed("salt-run", "--out=json", "state.orchestrate", "k8s.cluster")
    cpu = {key: value - cpu0[key] for key, value in lab_cpu().items()}
    rows, changes = orchestrate_figures(data)
    print(
        f"{label}: {wall:.1f} s wall, {changes} state changes on the minions; CPU: minions {cpu['minions']:.1f} s, "
        f"salt-master {cpu['master']:.1f} s",
        flush=True,
    )
    for sid, seconds, n, ok in rows:
        print(f"    {seconds:7.1f} s  {n:3d} changes  {'ok ' if ok else 'FAIL'}  {sid}", flush=True)
    return wall, cpu["minions"]


def serve(tree):
    """Restart the lab master serving ``tree`` (no orchestration)."""
    up = subprocess.run(
        LAB + ["up"], capture_output=True, text=True, env=dict(os.environ, LAB_SALT_TREE=tree, LAB_ORCHESTRATE="0")
    )
    if up.returncode != 0:
        sys.exit(f"lab.sh up with LAB_SALT_TREE={tree} failed:\n{up.stdout[-2000:]}\n{up.stderr[-2000:]}")


def compare(trees, rounds, runs):
    """No-op orchestrations alternating between the checkouts ``trees`` on the running lab. Afterwards the lab serves
    the tree it served before, its modules synced back by one more orchestration (otherwise a later `make lab-test`
    would test the last tree compared, not this checkout)."""
    with open(LAB_JSON) as fh:
        before = json.load(fh)["salt_tree"]
    walls, cpus = {tree: [] for tree in trees}, {tree: [] for tree in trees}
    try:
        for round_ in range(1, rounds + 1):
            for tree in trees:
                serve(tree)
                orchestrate(f"round {round_} {tree} warm-up (syncs its modules)")
                for run in range(1, runs + 1):
                    wall, cpu = orchestrate(f"round {round_} {tree} no-op {run}")
                    walls[tree].append(wall)
                    cpus[tree].append(cpu)
    finally:
        serve(before)
        orchestrate(f"back to {before} (syncs its modules)")

    def span(values):
        return f"{min(values):.1f}-{max(values):.1f} s (mean {sum(values) / len(values):.1f})"

    for tree, values in walls.items():
        print(f"{tree}: no-op orchestration {span(values)}; minions' CPU {span(cpus[tree])}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="no-op orchestrations to time")
    parser.add_argument("--trees", help="checkouts to compare, comma-separated (LAB_SALT_TREE in turn)")
    parser.add_argument("--rounds", type=int, default=2, help="with --trees: rounds of alternation")
    args = parser.parse_args()
    if args.trees:
        compare([os.path.abspath(t) for t in args.trees.split(",")], args.rounds, args.runs)
        return
    for run in range(1, args.runs + 1):
        orchestrate(f"orchestrate re-run {run}")
    wall, data = timed("salt", "--out=json", "--static", "-C", "G@role:master or G@role:worker", "state.highstate")
    changes = sum(
        1 for states in data.values() for s in (states or {}).values() if isinstance(s, dict) and s.get("changes")
    )
    print(f"state.highstate on {len(data)} nodes: {wall:.1f} s wall, {changes} state changes")


if __name__ == "__main__":
    main()
