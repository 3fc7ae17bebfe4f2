"""Day-2 operations on the running lab (README "Day-2 operations"), run after test_cluster.py / test_faults.py:
etcd snapshots, restore after a namespace was deleted, etcd membership changed on a live cluster (shrink, grow,
replace, a member on another node) with the API probed all along, a worker removed (a PodDisruptionBudget first holds
the drain back) and added again, a master whose disk is gone replaced, and the CA master restored from its backup.

Membership changes edit the lab's pillar (`k8s:nodes:<id>:roles`) and give nodes the matching role grain, as an
operator would; every test puts both back. The membership and master tests need `LAB_MASTERS=3`."""

import base64
import contextlib
import json
import time

import pytest

from tests.lab.conftest import STATE, kubectl, kubectl_json, lab, node_root, wait_for
from tests.lab.traffic import ApiProbe

pytestmark = pytest.mark.lab
PILLAR = STATE / "pillar" / "k8s.sls"
NS = "kubesalt-day2"


# -- helpers ----------------------------------------------------------------------------------------------------------
def salt_json(*args, timeout=1800, check=True):
    out = lab("salt", "--out=json", "--static", *args, timeout=timeout, check=check)
    return json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}


def apply(node, sls, pillar=None, test=False):
    args = [node, "state.apply", sls]
    if pillar:
        args.append(f"pillar={json.dumps(pillar)}")
    if test:
        args.append("test=True")
    return salt_json(*args)[node]


def ok(states):
    assert isinstance(states, dict), states
    failed = {k: v["comment"] for k, v in states.items() if not v["result"]}
    assert not failed, failed
    return {v["__id__"] for v in states.values() if v.get("changes")}


def orchestrate(sls, pillar=None, check=True):
    args = ["salt-run", "--out=json", "state.orchestrate", sls]
    if pillar:
        args.append(f"pillar={json.dumps(pillar)}")
    out = lab(*args, timeout=3600, check=False)
    data = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}
    steps = next(iter(data.get("data", {}).values()), {}) if data else {}
    if check:
        failed = {sid: s.get("comment", "") for sid, s in steps.items() if not s.get("result")}
        assert out.returncode == 0 and not failed, (out.stdout[-4000:], out.stderr[-2000:], failed)
    return out, steps


def read_pillar():
    text = PILLAR.read_text()
    head, _, body = text.partition("k8s: ")
    return head, json.loads(body)


@contextlib.contextmanager
def pillar_roles():
    """Inside the block nodes may get other roles (:py:func:`set_roles`); afterwards the lab's pillar and role grains
    are put back."""
    original = PILLAR.read_text()
    _head, k8s = read_pillar()
    before = {node: list(entry["roles"]) for node, entry in k8s["nodes"].items()}
    try:
        yield
    finally:
        PILLAR.write_text(original)
        lab("salt", "*", "saltutil.refresh_pillar", "wait=True", timeout=300)
        for node, roles in before.items():
            lab("salt", node, "grains.setval", "role", json.dumps(sorted(r for r in roles if r != "etcd")), timeout=120)


def set_roles(changes):
    """Give nodes these roles in the lab pillar. A node that gains the etcd role also gets the `etcd` role grain (the
    orchestrations find etcd hosts by grain); a grain is never taken away here, so a node that loses the role is still
    found -- and retired -- by k8s.etcd.member."""
    head, k8s = read_pillar()
    for node, roles in changes.items():
        k8s["nodes"][node]["roles"] = roles
        if "etcd" in roles:
            lab("salt", node, "grains.append", "role", "etcd", timeout=120)
    PILLAR.write_text(head + "k8s: " + json.dumps(k8s, indent=2, sort_keys=True) + "\n")
    lab("salt", "*", "saltutil.refresh_pillar", "wait=True", timeout=300)


def members(ca):
    return sorted((m["name"], m["is_learner"]) for m in salt_json(ca, "k8s_etcd.member_list")[ca])


def nodes_ready():
    items = kubectl_json("get", "nodes")["items"]
    return all(any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]) for n in items)


@pytest.fixture(scope="module")
def ca(masters):
    return masters[0]


@pytest.fixture(scope="module")
def three_masters(masters):
    if len(masters) < 3:
        pytest.skip("needs a lab with 3 masters (LAB_MASTERS=3 make lab)")
    return masters


# -- 1. snapshots -----------------------------------------------------------------------------------------------------
def test_backup_takes_a_checked_0600_snapshot_with_only_encrypted_secrets_and_arms_the_timer(ca):
    kubectl("create", "namespace", NS, check=False)
    kubectl("-n", NS, "create", "secret", "generic", "backup-probe", "--from-literal=k=v", check=False)
    # a snapshot an earlier run took within max_age would (rightly) make this apply take none: set those aside
    lab("exec", ca, "sh", "-c", "cd /var/backups/kubesalt/etcd && mkdir -p earlier && mv etcd-snapshot-* earlier/ || :")
    first = apply(ca, "k8s.etcd.backup")
    assert "etcd snapshot" in ok(first)
    taken = next(v for v in first.values() if v["__id__"] == "etcd snapshot")["changes"]["snapshot"]
    path = node_root(ca) / taken.lstrip("/")
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    facts = salt_json(ca, "k8s_etcd.verify_snapshot", taken)[ca]
    assert facts["secrets"] >= 1 and facts["secrets_encrypted"] == facts["secrets"], facts
    assert ok(apply(ca, "k8s.etcd.backup")) == set()  # within max_age: no second snapshot
    assert lab("exec", ca, "systemctl", "is-active", "kubesalt-etcd-backup.timer").stdout.strip() == "active"
    # the timer's service, started by hand, takes one more without the salt-master's help
    lab("exec", ca, "systemctl", "start", "kubesalt-etcd-backup.service", timeout=300)
    assert len(salt_json(ca, "k8s_etcd.snapshots")[ca]) >= 2


# -- 2. restore -------------------------------------------------------------------------------------------------------
def test_restore_brings_back_a_deleted_namespace_with_its_secret_and_every_node_is_ready(ca):
    kubectl("create", "namespace", NS, check=False)
    kubectl("-n", NS, "create", "configmap", "restore-probe", "--from-literal=k=before", check=False)
    kubectl("-n", NS, "create", "secret", "generic", "restore-secret", "--from-literal=password=s3cret", check=False)
    taken = salt_json(ca, "k8s_etcd.backup")[ca]
    assert taken["secrets"] == taken["secrets_encrypted"]
    kubectl("delete", "namespace", NS, "--wait=true", timeout=300)
    assert NS not in kubectl("get", "namespaces", "-o", "name")
    out, steps = orchestrate("k8s.etcd.restore", {"snapshot": "latest"})
    assert "seed restored, other data directories moved aside" in json.dumps(steps), steps
    wait_for(nodes_ready, 600, "every node Ready after the restore")
    assert kubectl("-n", NS, "get", "configmap", "restore-probe", "-o", "jsonpath={.data.k}") == "before"
    secret = kubectl("-n", NS, "get", "secret", "restore-secret", "-o", "jsonpath={.data.password}")
    assert base64.b64decode(secret) == b"s3cret"
    health = salt_json(ca, "k8s_etcd.cluster_health")[ca]
    assert health["quorum"] and not health["unhealthy"], health


# -- 3. membership on a live cluster ----------------------------------------------------------------------------------
def test_etcd_shrinks_to_one_grows_to_three_replaces_one_and_moves_a_member_while_the_api_answers(
    three_masters, ca, workers
):
    m1, m2, m3 = three_masters[:3]
    mover = workers[0]
    with ApiProbe() as probe, pillar_roles():
        # 3 -> 1: the other two leave one at a time, quorum checked before each removal, then retire
        set_roles({m2: ["master"], m3: ["master"]})
        orchestrate("k8s.etcd.member")
        assert members(ca) == [(m1, False)]
        for node in (m2, m3):
            aside = lab("exec", node, "sh", "-c", "ls -d /var/lib/etcd.removed-*").stdout.split()
            assert aside, f"{node}: its data directory was not moved aside"
            assert lab("exec", node, "systemctl", "is-active", "etcd", check=False).stdout.strip() != "active"
        # 1 -> 3: each joins as a learner with --initial-cluster-state existing and is promoted
        set_roles({m2: ["master", "etcd"], m3: ["master", "etcd"]})
        orchestrate("k8s.etcd.member")
        assert members(ca) == sorted([(m1, False), (m2, False), (m3, False)])
        env = (node_root(m3) / "etc/kubernetes/etcd-first-start.env").read_text()
        assert "ETCD_INITIAL_CLUSTER_STATE=existing" in env
        # a member whose disk is gone: replaced under the same id
        lab("exec", m3, "systemctl", "stop", "etcd")
        lab("exec", m3, "sh", "-c", "mv /var/lib/etcd /var/lib/etcd.lost-disk-$(date +%s%N)")
        orchestrate("k8s.etcd.member", {"replace": m3})
        assert members(ca) == sorted([(m1, False), (m2, False), (m3, False)])
        # a member moved onto another node (a new id): 4 members for a moment, then 3 again
        set_roles({mover: ["worker", "etcd"]})
        orchestrate("k8s.etcd.member")
        assert members(ca) == sorted([(m1, False), (m2, False), (m3, False), (mover, False)])
        set_roles({m3: ["master"]})
        orchestrate("k8s.etcd.member")
        assert members(ca) == sorted([(m1, False), (m2, False), (mover, False)])
        # and back to the lab's own membership
        set_roles({mover: ["worker"], m3: ["master", "etcd"]})
        orchestrate("k8s.etcd.member")
        assert members(ca) == sorted([(m1, False), (m2, False), (m3, False)])
    assert probe.ok > 30 and probe.failed == [], probe.failed
    assert ok(apply(ca, "k8s.etcd.membership")) == set()


def test_removing_a_member_that_would_cost_quorum_is_refused(three_masters, ca):
    m1, m2, m3 = three_masters[:3]
    lab("exec", m3, "systemctl", "stop", "etcd")
    try:
        with pillar_roles():
            set_roles({m2: ["master"]})
            # the cluster side alone (the orchestration would start m3 again first)
            states = apply(ca, "k8s.etcd.membership")
            refused = [v["comment"] for v in states.values() if not v["result"]]
            assert refused and "would lose quorum" in refused[0], states
            assert len(members(ca)) == 3
    finally:
        lab("exec", m3, "systemctl", "start", "etcd")
    assert ok(apply(ca, "k8s.etcd.membership")) == set()


# -- 4. node removal --------------------------------------------------------------------------------------------------
def test_a_worker_is_drained_honouring_a_budget_then_removed_and_added_again(workers):
    victim = workers[-1]
    kubectl("create", "namespace", NS, check=False)
    deployment = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: pinned, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: pinned}}}}
  template:
    metadata: {{labels: {{app: pinned}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {victim}}}
      containers: [{{name: c, image: kubesalt.lab/busybox:1.35, command: [sleep, "3600"]}}]
---
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {{name: pinned, namespace: {NS}}}
spec: {{minAvailable: 1, selector: {{matchLabels: {{app: pinned}}}}}}
"""
    kubectl("apply", "-f", "-", input=deployment)
    kubectl("-n", NS, "rollout", "status", "deployment/pinned", "--timeout=180s", timeout=240)
    out, steps = orchestrate("k8s.node.remove", {"node": victim, "drain_timeout": 20}, check=False)
    assert out.returncode != 0 and "disruption budget" in json.dumps(steps), steps
    assert victim in kubectl("get", "nodes", "-o", "name")  # nothing removed, only cordoned
    kubectl("-n", NS, "delete", "pdb", "pinned")
    orchestrate("k8s.node.remove", {"node": victim})
    assert victim not in kubectl("get", "nodes", "-o", "name")
    assert lab("exec", victim, "systemctl", "is-active", "kubelet", check=False).stdout.strip() != "active"
    assert not (node_root(victim) / "etc/systemd/system/kubelet.service").exists()
    # the same node comes back with its highstate
    kubectl("-n", NS, "delete", "deployment", "pinned")
    ok(apply(victim, "k8s.worker"))
    wait_for(nodes_ready, 300, f"{victim} Ready again")


def test_the_ca_minion_cannot_be_removed_as_a_node(ca):
    out, steps = orchestrate("k8s.node.remove", {"node": ca}, check=False)
    assert out.returncode != 0 and "is the CA minion" in json.dumps(steps), steps


# -- 5. a master whose disk is gone, and the CA master --------------------------------------------------------------
def test_a_master_whose_disk_is_gone_is_replaced_under_its_id(three_masters, ca):
    victim = three_masters[2]
    with ApiProbe() as probe:
        lab("exec", victim, "sh", "-c", "systemctl stop kube-apiserver kube-controller-manager kube-scheduler etcd")
        # the disk is gone: kubesalt's directories and etcd's data (moved away, not deleted, so the lab can look)
        lab(
            "exec",
            victim,
            "sh",
            "-c",
            "mv /etc/kubernetes /etc/kubernetes.lost-disk-$$; mv /var/lib/etcd /var/lib/etcd.lost-disk-$$",
        )
        orchestrate("k8s.etcd.member", {"replace": victim})
        ok(apply(victim, "k8s.master"))
    wait_for(nodes_ready, 300, "every node Ready")
    assert (victim, False) in members(ca)
    assert probe.failed == [], probe.failed


def test_the_ca_master_comes_back_from_its_encrypted_backup(ca, masters, workers):
    key_file = f"/root/kubesalt-ca-backup-{time.time_ns()}.key"  # the function refuses to overwrite an earlier one
    keys = salt_json(ca, "k8s_pki.backup_keypair", key_file)[ca]
    assert isinstance(keys, dict), keys
    head, k8s = read_pillar()
    original = PILLAR.read_text()
    try:
        k8s["pki"] = dict(k8s.get("pki") or {}, backup={"recipient": keys["recipient"]})
        PILLAR.write_text(head + "k8s: " + json.dumps(k8s, indent=2, sort_keys=True) + "\n")
        lab("salt", "*", "saltutil.refresh_pillar", "wait=True", timeout=300)
        done = apply(ca, "k8s.pki.backup")
        archive = next(v for v in done.values() if v["__id__"] == "CA directory backed up")["changes"]["archive"]
        assert archive.endswith(".sealed")
        assert ok(apply(ca, "k8s.pki.backup")) == set()
        before = (node_root(workers[0]) / "etc/kubernetes/pki/kubelet.crt").read_bytes()
        # the CA directory is lost
        lab("exec", ca, "sh", "-c", "mv /etc/kubernetes/pki/ca /etc/kubernetes/pki/ca.lost-disk-$$")
        restored = salt_json(ca, "k8s_pki.ca_restore", archive, key_file)[ca]
        assert "kubernetes-ca.key" in restored["files"] and "etcd-ca.key" in restored["files"]
        # the same CAs and cluster secrets came back: nothing to create, nothing to re-issue
        assert ok(apply(ca, "k8s.pki.ca")) == set()
        assert ok(apply(workers[0], "k8s.pki")) == set()
        assert (node_root(workers[0]) / "etc/kubernetes/pki/kubelet.crt").read_bytes() == before
        ok(apply(ca, "k8s.master"))
        wait_for(nodes_ready, 300, "every node Ready")
    finally:
        PILLAR.write_text(original)
        lab("salt", "*", "saltutil.refresh_pillar", "wait=True", timeout=300)
