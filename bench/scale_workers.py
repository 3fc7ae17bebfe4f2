#!/usr/bin/env python3
"""
Benchmark: the Salt-side cost of converging workers as the cluster grows. Prints figures, asserts nothing.

For each worker count (default 5, 25, 50) it starts a REAL salt-master and REAL salt-minions on this machine
(processes from the project's venv; one CA master minion + N workers), with kubesalt's master config (file_roots,
peer rules) and a local artifact mirror (the integration tests' mirror tree: stand-in binaries with their real
digests). Every minion runs in render-only mode (``k8s:manage_services: false``, its own ``k8s:fs_root``): no
daemons, because N kubelets cannot run on one 2-core machine. Then it times, through the master:

1. ``k8s.pki.ca`` + ``k8s.pki`` on the CA minion (not counted in the ratio);
2. ``state.apply k8s.worker`` on all N workers, 4 at a time (``--batch-size 4``, what the orchestration's default
   ``k8s:worker_batch`` does): per worker two keys + CSRs signed by the CA minion in one peer publish
   (``k8s_pki.sign_batch_remote``), every binary downloaded from the mirror and verified, every config file and
   unit written;
3. the same again (no-op: must report 0 changes);
4. Salt's own floor on the same cluster, every phase on all N workers 4 at a time: a ``test.ping`` job, a state run
   of nothing (``state.single test.nop``: the pillar compile every state run starts with, publish, return) and a
   peer-published ``test.ping`` to the CA minion (the benchmark's master allows that one function besides kubesalt's
   peer rules). One state run plus one peer call is the least a worker costs the shared parts in kubesalt's design
   (one ``state.apply``, one signing request); it is printed next to what the converge cost;
5. ``worker_batch`` guidance: B workers at once (4, 8, 16, ... up to N) each send the CA minion one signing request
   (two CSRs, as a new worker does) through peer publish; the time until the last reply, against the 30 s a node
   waits for its reply (``k8s_pki.certificate_managed`` timeout), gives the largest batch the CA minion serves in
   time on this machine.

It reports wall times, the time per worker, the change counts, the mirror requests and the largest-vs-smallest ratio,
and where the CPU went during the converge: the salt-master, the CA minion (signing over peer publish) and the
worker minions (rendering, downloads, file writes), in CPU-seconds per worker. On this 2-core machine every minion
shares the same cores, so the wall time grows with the total CPU; on real nodes each worker's own work runs on its own
machine and only the master's and the CA minion's share is common to all -- that share is what tells whether signing
serializes.

The salt-master runs the README's master config (peer rules and worker pools, read from the README's block).
Options: --batch (default 4, the orchestration's k8s:worker_batch) and --single-pool N (instead of the README's worker
pools, one pool of N workers for every command, as `worker_threads: N` gives: reproduces the peer-publish stall the
README describes).

Usage:  .venv/bin/python bench/scale_workers.py [--workers 5,25,50] [--keep]
"""

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "_utils"))
from kubesalt import x509  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.conftest import VERSIONS, mirror_tree  # noqa: E402
from tests.support.httpserver import LocalHTTPServer  # noqa: E402
from tests.support.master_conf import PEER_RULES, WORKER_POOLS  # noqa: E402

VENV = ROOT / ".venv" / "bin"
# How long a node waits for the CA minion's reply to a signing request (k8s_pki.certificate_managed's timeout).
REPLY_TIMEOUT = 30
# The orchestration's default k8s:worker_batch: nodes converging (and calling the CA minion) at once.
BATCH = 4
SINGLE_POOL = 0  # 0: the README's worker_pools; N: one catch-all pool of N workers (worker_threads: N)


def cpu_seconds(proc):
    """CPU-seconds used by ``proc`` and every live descendant, including children they have already reaped."""
    total = 0.0
    try:
        procs = [psutil.Process(proc.pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def daemon_env():
    """The environment the salt daemons run in: this one, less what a systemd unit would not give them. Python must
    write bytecode (PYTHONDONTWRITEBYTECODE, set in some shells and CI images, makes every job of a minion compile
    the synced modules from source again)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, base, workers, mirror_url, pins):
        self.base, self.workers = base, [f"worker{i:03d}" for i in range(1, workers + 1)]
        self.procs = []
        self.master_dir = base / "master"
        self.ports = (free_port(), free_port())
        nodes = {"master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"}}
        nodes.update(
            {
                w: {"roles": ["worker"], "ip": f"10.240.{(i + 21) // 250}.{(i + 21) % 250 + 1}"}
                for i, w in enumerate(self.workers)
            }
        )
        pillar_dir = base / "pillar"
        pillar_dir.mkdir(parents=True)
        (pillar_dir / "top.sls").write_text("base:\n  '*':\n    - k8s\n")
        pillar = {
            "k8s": {
                "manage_services": False,
                "nodes": nodes,
                "versions": VERSIONS,
                "networks": {"node_cidr": "10.240.0.0/16", "pod_cidr": "172.16.0.0/12", "node_pod_prefix": 24},
                "artifacts": {"mirror": mirror_url, "pins": pins},
            }
        }
        text = yaml.safe_dump(pillar)
        text = text.replace(
            "manage_services: false",
            "manage_services: false\n  fs_root: " + str(base / "nodes") + "/{{ grains['id'] }}",
        )
        (pillar_dir / "k8s.sls").write_text(text)
        self.master_conf = {
            "root_dir": str(self.master_dir),
            "interface": "127.0.0.1",
            "publish_port": self.ports[0],
            "ret_port": self.ports[1],
            "file_roots": {"base": [str(ROOT / "formulas")]},
            "pillar_roots": {"base": [str(pillar_dir)]},
            # kubesalt's peer rules, plus test.ping for the floor phase (a peer call that does nothing).
            "peer": {**PEER_RULES, "worker[0-9]+": ["test.ping"]},
            "auto_accept": True,
            "log_level_logfile": "warning",
            "user": "root",
            "state_events": False,
            "worker_pools": (
                WORKER_POOLS if not SINGLE_POOL else {"default": {"worker_count": SINGLE_POOL, "commands": ["*"]}}
            ),
        }
        (self.master_dir / "conf").mkdir(parents=True)
        (self.master_dir / "conf" / "master").write_text(yaml.safe_dump(self.master_conf))

    def _minion_conf(self, mid, role):
        mdir = self.base / "minions" / mid
        (mdir / "conf").mkdir(parents=True)
        conf = {
            "id": mid,
            "root_dir": str(mdir),
            "master": "127.0.0.1",
            "master_port": self.ports[1],
            "publish_port": self.ports[0],
            "grains": {"role": [role]},
            "log_level_logfile": "warning",
            "user": "root",
            "acceptance_wait_time": 1,
            "random_reauth_delay": 0,
            "state_events": False,
        }
        (mdir / "conf" / "minion").write_text(yaml.safe_dump(conf))
        return mdir / "conf"

    def start(self):
        self.procs.append(
            subprocess.Popen(
                [str(VENV / "salt-master"), "-c", str(self.master_dir / "conf"), "-l", "quiet"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=daemon_env(),
            )
        )
        time.sleep(3)
        for mid, role in [("master01", "master")] + [(w, "worker") for w in self.workers]:
            conf = self._minion_conf(mid, role)
            self.procs.append(
                subprocess.Popen(
                    [str(VENV / "salt-minion"), "-c", str(conf), "-l", "quiet"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=daemon_env(),
                )
            )
        expected = {"master01", *self.workers}
        deadline = time.time() + 300
        while time.time() < deadline:
            ret = self.salt("*", "test.ping", timeout=10)
            if isinstance(ret, dict) and expected <= {k for k, v in ret.items() if v is True}:
                return
            time.sleep(2)
        raise SystemExit(f"minions did not all answer: {sorted(expected - set(ret or {}))}")

    def salt(self, tgt, fun, *args, timeout=600, tgt_type=None, batch=None):
        cmd = [str(VENV / "salt"), "-c", str(self.master_dir / "conf"), "--out=json", "--static", "-t", str(timeout)]
        if tgt_type:
            cmd.append(f"--{tgt_type}")
        if batch:
            cmd.append(f"--batch-size={batch}")
        out = subprocess.run(cmd + [tgt, fun, *args], capture_output=True, text=True)
        try:
            return json.loads(out.stdout) if out.stdout.strip() else {}
        except json.JSONDecodeError:
            return {"_raw": out.stdout + out.stderr}

    def cpu(self):
        """CPU-seconds so far: (salt-master, CA minion, all worker minions)."""
        return (cpu_seconds(self.procs[0]), cpu_seconds(self.procs[1]), sum(cpu_seconds(p) for p in self.procs[2:]))

    def stop(self):
        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def summarize(ret):
    """(minions ok, total state changes, failures) of a state.apply return."""
    ok, changes, failures = 0, 0, []
    for mid, states in ret.items():
        if not isinstance(states, dict):
            failures.append((mid, str(states)[:300]))
            continue
        bad = [s.get("comment", "")[:200] for s in states.values() if isinstance(s, dict) and s.get("result") is False]
        changes += sum(1 for s in states.values() if isinstance(s, dict) and s.get("changes"))
        if bad:
            failures.append((mid, bad[0]))
        else:
            ok += 1
    return ok, changes, failures


def signing_batches(cluster, count):
    """[(batch, seconds until the last reply, replies holding both certificates)] for B workers sending the CA minion
    one signing request each at once, B = 4, 8, 16, ... up to ``count``."""
    key = x509.generate_private_key()
    csr = x509.create_csr(key, "ignored")
    arg = json.dumps([{"__kwarg__": True, "requests": {"kubelet": csr, "kube-proxy": csr}}])
    sizes = sorted({b for b in (4, 8, 16, 32, 64, 128) if b < count} | {count})
    rows = []
    for size in sizes:
        targets = ",".join(cluster.workers[:size])
        t0 = time.time()
        ret = cluster.salt(
            targets,
            "publish.publish",
            "master01",
            "k8s_pki.sign_batch_remote",
            f"arg={arg}",
            f"timeout={REPLY_TIMEOUT}",
            timeout=REPLY_TIMEOUT + 30,
            tgt_type="list",
        )
        elapsed = time.time() - t0
        good = sum(
            1
            for reply in ret.values()
            if isinstance(reply, dict)
            and isinstance(reply.get("master01"), dict)
            and {"kubelet", "kube-proxy"} <= set(reply["master01"])
        )
        rows.append((size, elapsed, good))
        if good < size:
            break
    return rows


def floor(cluster):
    """What Salt itself costs the salt-master and the CA minion per worker, measured on the same cluster, each
    phase on every worker ``BATCH`` at a time: ``{phase: (master CPU-s, CA minion CPU-s)}`` for a ``test.ping`` job,
    a state run of nothing (``state.single test.nop``: the pillar compile every state run starts with, the publish,
    the return) and a worker's peer-published ``test.ping`` to the CA minion (inside a job of its own, as a signing
    request sits inside the worker's state run)."""
    # phase: (the command, whether one worker's reply shows it ran)
    phases = {
        "test.ping": (("test.ping",), lambda reply: reply is True),
        "state run of nothing": (
            ("state.single", "test.nop", "name=floor"),
            lambda reply: summarize({"worker": reply})[0] == 1,
        ),
        "peer call": (
            ("publish.publish", "master01", "test.ping", "tgt_type=list"),
            lambda reply: reply == {"master01": True},
        ),
    }
    out = {}
    for name, (fun, answered) in phases.items():
        cpu0 = cluster.cpu()
        ret = cluster.salt("G@role:worker", *fun, tgt_type="compound", batch=BATCH)
        out[name] = [after - before for before, after in zip(cpu0[:2], cluster.cpu()[:2], strict=True)]
        bad = sorted(set(cluster.workers) - {mid for mid, reply in ret.items() if answered(reply)})
        if bad:  # a phase that did not run everywhere would understate the floor
            example = f"{ret.get(bad[0])!r:.300}"
            raise SystemExit(f"floor phase {name!r} failed on {len(bad)} workers, e.g. {bad[0]}: {example}")
    return out


def run(count, keep):
    base = pathlib.Path(tempfile.mkdtemp(prefix=f"kubesalt-scale-{count}-"))
    mirror_root = base / "mirror"
    pins = mirror_tree(mirror_root)
    server = LocalHTTPServer().start()
    server.serve_directory("/", str(mirror_root))
    cluster = Cluster(base, count, server.base_url, pins)
    figures = {}
    try:
        t0 = time.time()
        cluster.start()
        figures["start"] = time.time() - t0
        cluster.salt("*", "saltutil.sync_all")
        t0 = time.time()
        ca = cluster.salt("master01", "state.apply", "k8s.pki")
        figures["ca"] = time.time() - t0
        ok, _, failures = summarize(ca)
        if failures:
            raise SystemExit(f"CA minion failed: {failures}")
        t0, cpu0 = time.time(), cluster.cpu()
        first = cluster.salt("G@role:worker", "state.apply", "k8s.worker", tgt_type="compound", batch=BATCH)
        figures["workers"] = time.time() - t0
        figures["cpu"] = [after - before for before, after in zip(cpu0, cluster.cpu(), strict=True)]
        figures["ok"], figures["changes"], failures = summarize(first)
        figures["failures"] = failures[:3]
        t0, cpu0 = time.time(), cluster.cpu()
        again = cluster.salt("G@role:worker", "state.apply", "k8s.worker", tgt_type="compound", batch=BATCH)
        figures["noop"] = time.time() - t0
        figures["noop_cpu"] = [after - before for before, after in zip(cpu0, cluster.cpu(), strict=True)]
        figures["noop_ok"], figures["noop_changes"], _ = summarize(again)
        figures["requests"] = server.count()
        figures["floor"] = floor(cluster)
        figures["signing"] = signing_batches(cluster, count)
        # A master worker whose own publication timed out (the stall the README's worker pools remove) logs this.
        log = cluster.master_dir / "var" / "log" / "salt" / "master"
        figures["stalls"] = log.read_text(errors="replace").count("Request timed out") if log.exists() else 0
    finally:
        cluster.stop()
        server.stop()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    return figures


def main():
    global BATCH, SINGLE_POOL
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="5,25,50")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--batch", type=int, default=BATCH, help="workers converging at once (k8s:worker_batch)")
    parser.add_argument(
        "--single-pool",
        type=int,
        default=0,
        metavar="N",
        help="one pool of N master workers for every command instead of the README's worker pools",
    )
    args = parser.parse_args()
    BATCH, SINGLE_POOL = args.batch, args.single_pool
    pools = (
        f"one pool of {SINGLE_POOL} workers"
        if SINGLE_POOL
        else ", ".join(f"{name} {p['worker_count']}" for name, p in WORKER_POOLS.items()) + " (the README's)"
    )
    print(f"batch {BATCH}, master worker pools: {pools}; {os.cpu_count()} CPUs shared by every process")
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    counts = [int(c) for c in args.workers.split(",")]
    results = {}
    print(
        f"{'workers':>7} {'start s':>8} {'CA s':>6} {'converge s':>10} {'per worker s':>12} {'ok':>4} "
        f"{'changes':>7} {'no-op s':>8} {'no-op changes':>13} {'mirror GETs':>11}"
    )
    for count in counts:
        f = run(count, args.keep)
        results[count] = f
        print(
            f"{count:>7} {f['start']:>8.1f} {f['ca']:>6.1f} {f['workers']:>10.1f} {f['workers'] / count:>12.2f} "
            f"{f['ok']:>4} {f['changes']:>7} {f['noop']:>8.1f} {f['noop_changes']:>13} {f['requests']:>11}",
            flush=True,
        )
        master, ca, workers = f["cpu"]
        print(
            f"        CPU during the converge: salt-master {master:.1f} s ({master / count:.2f} s/worker), CA minion "
            f"{ca:.1f} s ({ca / count:.2f} s/worker), worker minions {workers:.1f} s ({workers / count:.2f} s/worker)"
            f"; common share {100 * (master + ca) / max(master + ca + workers, 1e-9):.0f} %",
            flush=True,
        )
        master, ca, workers = f["noop_cpu"]
        print(
            f"        CPU during the no-op run (no signing: what any state.apply of a worker costs the shared parts): "
            f"salt-master {master / count:.2f} s/worker, CA minion {ca / count:.2f} s/worker",
            flush=True,
        )
        fl = {k: (m / count, c / count) for k, (m, c) in f["floor"].items()}
        peer = [a - b for a, b in zip(fl["peer call"], fl["test.ping"], strict=True)]
        least = fl["state run of nothing"][0] + peer[0] + peer[1]
        print(
            f"        Salt's own floor per worker (salt-master / CA minion CPU-s): test.ping job "
            f"{fl['test.ping'][0]:.2f}; state run of nothing {fl['state run of nothing'][0]:.2f}; a peer call to "
            f"the CA minion, beyond its job's own ping {peer[0]:.2f} / {peer[1]:.2f}. One state run and one peer call "
            f"cost the shared parts at least {least:.2f} per worker (the converge: "
            f"{(f['cpu'][0] + f['cpu'][1]) / count:.2f})",
            flush=True,
        )
        print(f"        master publish stalls (a request timed out inside the salt-master): {f['stalls']}", flush=True)
        for size, seconds, good in f["signing"]:
            print(
                f"        worker_batch {size:>3}: {size} signing requests at once, last reply after {seconds:.1f} s "
                f"({good}/{size} answered; {'inside' if seconds < REPLY_TIMEOUT else 'past'} the {REPLY_TIMEOUT} s "
                "reply timeout)",
                flush=True,
            )
        served = [(size, seconds) for size, seconds, good in f["signing"] if good == size and seconds < REPLY_TIMEOUT]
        if served:
            size, seconds = served[-1]
            print(
                f"        worker_batch guidance: {size} served in {seconds:.1f} s (measured); at "
                f"{seconds / size:.2f} s per request the CA minion serves about {int(REPLY_TIMEOUT * size / seconds)} "
                f"inside the {REPLY_TIMEOUT} s reply timeout",
                flush=True,
            )
        if f["failures"]:
            print("   failures:", f["failures"])
    if len(counts) > 1:
        lo, hi = counts[0], counts[-1]
        print(
            f"converge time {hi} vs {lo} workers: ratio {results[hi]['workers'] / results[lo]['workers']:.2f} "
            f"({hi / lo:.0f}x the workers)"
        )
        print(f"no-op time {hi} vs {lo} workers: ratio {results[hi]['noop'] / results[lo]['noop']:.2f}")


if __name__ == "__main__":
    main()
