"""Certificates renew without a human, on the running lab: a certificate made near-expiry is renewed by the node's
k8s_certs beacon and the master's reactor alone (conf/master.d/kubesalt.conf) within the beacon interval; only the
service using it restarts, and the node stays Ready. With several masters, their renewals restart one master at a
time (the etcd lock in k8s_ops.renew). Nobody applies a state or runs a command on the nodes here except to make
the certificates near-expiry and to read what happened.

The beacons check every INTERVAL seconds for this test (k8s.pki installs them from k8s:pki:renewal:interval, given
here as a command-line pillar); the fixture puts the default back afterwards."""

import datetime
import json
import time

import pytest

from tests.lab.conftest import kubectl_json, lab, node_root, record, wait_for
from tests.lab.test_faults import ca_minion_material, main_pid, ready, reissue, signed_by

pytestmark = pytest.mark.lab
INTERVAL = 20  # seconds between two beacon checks on every node during this test (default 3600)


def apply_pki(node, pillar=None):
    args = ["salt", "--out=json", "--static", node, "state.apply", "k8s.pki"]
    if pillar is not None:
        args.append(f"pillar={json.dumps(pillar)}")
    states = json.loads(lab(*args, timeout=600).stdout)[node]
    assert all(s["result"] for s in states.values()), {k: s["comment"] for k, s in states.items() if not s["result"]}
    return states


@pytest.fixture(scope="module")
def fast_beacons(inventory):
    nodes = sorted(inventory)
    for node in nodes:
        apply_pki(node, {"k8s": {"pki": {"renewal": {"enabled": True, "interval": INTERVAL}}}})
    yield nodes
    for node in nodes:
        apply_pki(node)  # back to k8s:pki:renewal from the lab pillar


def renew_returns(node, since):
    """The k8s_ops.renew jobs the reactor started on ``node`` since ``since`` (a jid), with their returns."""
    out = lab("salt-run", "--out=json", "jobs.list_jobs", "search_function=k8s_ops.renew", f"search_target={node}")
    jobs = sorted(jid for jid in json.loads(out.stdout) if jid >= since)
    returns = []
    for jid in jobs:
        found = json.loads(lab("salt-run", "--out=json", "jobs.lookup_jid", jid).stdout)
        if node in found:
            returns.append(found[node])
    return returns


def now_jid():
    return datetime.datetime.now().strftime("%Y%m%d%H%M%S%f")


def test_a_near_expiry_kubelet_certificate_is_renewed_by_beacon_and_reactor_alone(fast_beacons, workers, masters):
    worker = workers[0]
    ca_cert, ca_key = ca_minion_material(masters)
    crt = node_root(worker) / "etc/kubernetes/pki/kubelet.crt"
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)
    since, started = now_jid(), time.monotonic()
    pids = {u: main_pid(worker, u) for u in ("kubelet", "kube-proxy", "containerd")}
    reissue(crt, ca_cert, ca_key, soon)

    seen_ready = []

    def renewed():
        seen_ready.append(ready(worker))
        cert = signed_by(crt, ca_cert)
        return cert is not None and cert.not_valid_after_utc > soon + datetime.timedelta(days=300) and cert

    cert = wait_for(renewed, INTERVAL + 120, f"{worker}'s kubelet certificate renewed by the beacon + reactor", 2)
    took = time.monotonic() - started
    (answer,) = wait_for(lambda: renew_returns(worker, since), 60, "the reactor's k8s_ops.renew job on the worker")
    assert answer["renewed"] == ["kubelet"] and answer["restarted"] == ["kubelet"], answer
    assert answer["lock"] is None  # a worker restarts on its own
    after = {u: main_pid(worker, u) for u in pids}
    assert after["kubelet"] != pids["kubelet"], "the kubelet restarts onto its renewed certificate"
    assert after["kube-proxy"] == pids["kube-proxy"] and after["containerd"] == pids["containerd"], (pids, after)
    wait_for(lambda: ready(worker), 120, f"{worker} Ready")
    assert all(seen_ready), f"{worker} was NotReady during its renewal: {seen_ready}"
    record(
        "faults",
        fault=f"{worker}: kubelet certificate 2 days from expiry, nobody acting",
        outcome=f"renewed by beacon + reactor in {took:.0f} s (to {cert.not_valid_after_utc:%Y-%m-%d}); only the "
        "kubelet restarted; node Ready throughout",
    )


def test_masters_renewing_at_once_restart_one_at_a_time(fast_beacons, masters):
    if len(masters) < 2:
        pytest.skip("needs a lab with several masters (LAB_MASTERS=3 make lab)")
    ca_cert, ca_key = ca_minion_material(masters)
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    since = now_jid()
    for master in masters:  # the same day for every master, as after one orchestration
        reissue(node_root(master) / "etc/kubernetes/pki/apiserver.crt", ca_cert, ca_key, soon)

    def all_renewed():
        return all(renew_returns(m, since) for m in masters) and {m: renew_returns(m, since)[0] for m in masters}

    answers = wait_for(all_renewed, INTERVAL + 300, "every master's apiserver certificate renewed", 5)
    windows = []
    for master, answer in answers.items():
        assert answer["restarted"] == ["kube-apiserver"], (master, answer)
        (step,) = answer["timeline"]
        begin = datetime.datetime.fromisoformat(step["restarted_at"].replace("Z", "+00:00"))
        windows.append((begin, begin + datetime.timedelta(seconds=step["ready_after"]), master))
    windows.sort()
    for (_, end, first), (begin, _, second) in zip(windows, windows[1:], strict=False):
        # whole seconds in restarted_at: allow the one second that rounding can take
        assert begin >= end - datetime.timedelta(seconds=1), f"{first} and {second} restarted kube-apiserver at once"
    assert sum(a["lock"]["waited"] for a in answers.values()) > 0  # somebody waited for the lock
    wait_for(lambda: kubectl_json("get", "nodes")["items"], 120, "the API serving")
    record(
        "faults",
        fault=f"{len(masters)} masters: apiserver certificates 1 day from expiry at once, nobody acting",
        outcome="renewed by beacon + reactor; kube-apiserver restarted one master at a time (etcd lock)",
    )


def test_nothing_is_renewed_or_restarted_while_nothing_is_due(fast_beacons, masters, workers):
    since = now_jid()
    pids = {n: main_pid(n, "kubelet") for n in workers}
    time.sleep(2 * INTERVAL + 5)  # two beacon checks on every node
    assert all(renew_returns(n, since) == [] for n in masters + workers)
    assert {n: main_pid(n, "kubelet") for n in workers} == pids
