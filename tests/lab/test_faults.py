"""Faults on the running lab (after test_cluster.py): a minion that is down during an orchestration, a node's private
key deleted, a download whose digest is wrong. Each must fail clearly or heal, and lose nothing."""

import hashlib
import json

import pytest

from tests.lab.conftest import kubectl_json, lab, node_root, wait_for

pytestmark = pytest.mark.lab


def ready(name):
    node = next(n for n in kubectl_json("get", "nodes")["items"] if n["metadata"]["name"] == name)
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def orchestrate(check=False):
    out = lab("salt-run", "--out=json", "state.orchestrate", "k8s.cluster", timeout=1800, check=check)
    data = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}
    return out, data


def test_a_minion_down_stops_the_orchestration_naming_it_and_a_rerun_completes(workers):
    victim = workers[0]
    lab("exec", victim, "systemctl", "stop", "salt-minion")
    try:
        out, data = orchestrate()
        assert out.returncode != 0, "the orchestration must fail while a node's minion is down"
        steps = next(iter(data["data"].values()))
        failed = {sid: s.get("comment", "") for sid, s in steps.items() if not s["result"]}
        assert failed, steps
        text = json.dumps(failed)
        assert victim in text, failed  # the message names the minion that did not answer
    finally:
        lab("exec", victim, "systemctl", "start", "salt-minion")
    wait_for(lambda: json.loads(lab("salt", "--out=json", "--static", victim, "test.ping").stdout).get(victim), 120,
             f"{victim}'s minion back")
    out, data = orchestrate(check=True)
    steps = next(iter(data["data"].values()))
    assert all(s["result"] for s in steps.values()), steps


def test_a_deleted_node_key_is_regenerated_with_a_new_certificate_and_the_kubelet_restarts(workers):
    worker = workers[0]
    pki = node_root(worker) / "etc/kubernetes/pki"
    old_cert = (pki / "kubelet.crt").read_bytes()
    (pki / "kubelet.key").unlink()
    out = lab("salt", "--out=json", "--static", worker, "state.apply", "k8s.worker", timeout=900)
    states = json.loads(out.stdout)[worker]
    assert all(s["result"] for s in states.values()), {k: v["comment"] for k, v in states.items() if not v["result"]}
    changed = {s["__id__"] for s in states.values() if s.get("changes")}
    assert "kubelet certificate" in changed and "kubelet service" in changed, changed
    assert (pki / "kubelet.key").stat().st_mode & 0o777 == 0o600
    assert (pki / "kubelet.crt").read_bytes() != old_cert
    wait_for(lambda: ready(worker), 180, f"{worker} Ready with its new certificate")


def test_a_wrong_digest_fails_naming_it_and_keeps_the_installed_binary(workers):
    worker = workers[0]
    kubelet = node_root(worker) / "usr/local/bin/kubelet"
    before = hashlib.sha256(kubelet.read_bytes()).hexdigest()
    pins = {"kubelet": {"1.20.2": {"amd64": {"sha256": "0" * 64}}}}
    out = lab("salt", "--out=json", "--static", worker, "state.apply", "k8s.kubelet",
              "pillar=" + json.dumps({"k8s": {"artifacts": {"pins": pins}}}), timeout=900, check=False)
    states = json.loads(out.stdout)[worker]
    failed = {s["__id__"]: s["comment"] for s in states.values() if s["result"] is False}
    assert "kubelet binary" in failed and "0" * 64 in failed["kubelet binary"], failed
    assert hashlib.sha256(kubelet.read_bytes()).hexdigest() == before
    assert lab("exec", worker, "systemctl", "is-active", "kubelet").stdout.strip() == "active"
    assert ready(worker)


def test_one_etcd_member_down_the_rerun_restarts_only_that_member(masters):
    if len(masters) < 3:
        pytest.skip("needs a lab with 3 masters (LAB_MASTERS=3 make lab): a 3-member etcd")
    down = masters[-1]
    pids = {m: lab("exec", m, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout.strip()
            for m in masters}
    lab("exec", down, "systemctl", "stop", "etcd")
    out, data = orchestrate(check=True)
    steps = next(iter(data["data"].values()))
    assert all(s["result"] for s in steps.values()), steps
    after = {m: lab("exec", m, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout.strip()
             for m in masters}
    for m in masters[:-1]:
        assert after[m] == pids[m], f"etcd on {m} was restarted while {down} was down"
    assert after[down] not in ("", "0") and lab("exec", down, "systemctl", "is-active", "etcd").stdout.strip() == "active"
