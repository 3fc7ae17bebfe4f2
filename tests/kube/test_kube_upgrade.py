"""k8s.upgrade against a real etcd + kube-apiserver 1.20 (tests/support/apiserver.py): the preflight reads the
versions the real components report (the API server's /version, the etcd member's status, the Node objects) and
refuses what the version-skew policy forbids and an unhealthy cluster, naming node and version; the node steps mark,
cordon, wait for the target kubelet, uncordon and record the upgrade on the Node object, so an interrupted run is
finished by the next and a second run changes nothing. The states run over the real execution modules.

There is no kubelet here: a Node is created as its kubelet would create it, and its Ready condition and kubelet
version are reported with the admin certificate. etcd listens on 127.0.0.1 rather than on the inventory's node
addresses, so the etcd calls are handed its real client URL (the one stand-in)."""

import copy
import functools

import pytest
from salt.exceptions import CommandExecutionError

from tests.kube.conftest import Minions, public_functions, report_ready
from tests.support.loader import load
from tests.support.pki_fixtures import formula_yaml

pytestmark = pytest.mark.kube


def api(plane, method, path, body=None, expect=(200, 201), content_type=None):
    headers = {"Content-Type": content_type} if content_type else {}
    with plane.session() as admin:
        answer = admin.request(method, f"{plane.server}{path}", json=body, headers=headers, timeout=10)
    assert answer.status_code in expect, f"{method} {path}: {answer.status_code} {answer.text}"
    return answer.json() if answer.text else None


def report_kubelet(plane, node, version):
    api(
        plane,
        "PATCH",
        f"/api/v1/nodes/{node}/status",
        {"status": {"nodeInfo": {"kubeletVersion": version}}},
        content_type="application/merge-patch+json",
    )


def settings(plane, nodes, **versions):
    """master01's settings (the CA minion, running the API server and the etcd member) with inventory ``nodes``."""
    pillar = copy.deepcopy(plane.cluster.pillar)
    pillar.update(nodes=nodes, fs_root=str(plane.cluster.root / "master01"))
    pillar["versions"] = dict(pillar.get("versions") or {}, **versions)
    return plane.cluster._k8s.settings(
        formula_yaml("defaults.yaml")["k8s"],
        formula_yaml("profiles.yaml"),
        pillar,
        formula_yaml("catalogue.yaml"),
        minion_id="master01",
        validate=False,
    )


class Upgrade:
    """master01's k8s_upgrade execution and state modules over the real k8s_kube and k8s_etcd modules."""

    def __init__(self, plane, config):
        salt = Minions(plane).salt("master01")
        salt["k8s.config"] = lambda validate=False: config
        kube = load("k8s_kube", salt=salt, opts={"id": "master01", "test": False})
        salt.update(public_functions(kube, "k8s_kube"))
        etcd = load("k8s_etcd", salt=salt, opts={"id": "master01", "test": False})
        url = f"https://127.0.0.1:{plane.etcd_port}"
        salt["k8s_etcd.cluster_health"] = functools.partial(etcd.cluster_health, endpoints=[url])
        salt["k8s_etcd.endpoint_status"] = etcd.endpoint_status
        self.module = load("k8s_upgrade", salt=salt, opts={"id": "master01", "test": False})
        salt.update(public_functions(self.module, "k8s_upgrade"))
        self.salt = salt
        self.config = config

    def states(self, test=False):
        return load("k8s_upgrade", "states", salt=self.salt, opts={"id": "master01", "test": test})


@pytest.fixture
def worker(plane, name):
    """A Node of its own (registered as its kubelet would, Ready, kubelet 1.20.2) and master01's, both Ready."""
    node = f"up-{abs(hash(name)) % 10**8}"
    for each in ("master01", node):
        api(plane, "POST", "/api/v1/nodes", {"metadata": {"name": each}}, expect=(201, 409))
        report_ready(plane, each)
        report_kubelet(plane, each, "v1.20.2")
    yield node
    api(plane, "DELETE", f"/api/v1/nodes/{node}", expect=(200, 404))


def etcd_version(plane):
    with plane.session() as admin:  # any client: the version endpoint needs no authorization
        admin.cert = (plane.files("etcd-healthcheck-client")["cert"], plane.files("etcd-healthcheck-client")["key"])
        admin.verify = str(plane.pki_dir / "etcd-ca.crt")
        return admin.get(f"https://127.0.0.1:{plane.etcd_port}/version", timeout=5).json()["etcdserver"]


def test_preflight_refuses_what_the_real_versions_forbid_naming_node_and_version(plane, worker):
    running_etcd = etcd_version(plane)
    nodes = {"master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"}, worker: {"roles": ["worker"]}}
    nodes[worker]["ip"] = "10.240.0.21"
    major, minor, _ = (int(p) for p in running_etcd.split("."))
    up = Upgrade(plane, settings(plane, nodes, kubernetes="1.22.0", etcd=f"{major}.{minor}.0"))
    with pytest.raises(CommandExecutionError) as refused:
        up.module.preflight(up.config)
    text = str(refused.value)
    assert "Kubernetes 1.22.0 (k8s:versions:kubernetes) skips a minor: the API server on master01 runs 1.20.2" in text
    if running_etcd != f"{major}.{minor}.0":
        assert f"etcd {major}.{minor}.0 (k8s:versions:etcd) is older than member master01 ({running_etcd})" in text
    up = Upgrade(plane, settings(plane, nodes, kubernetes="1.20.2", etcd=f"{major}.{minor + 2}.0"))
    with pytest.raises(CommandExecutionError, match=f"skips a minor: member master01 runs {running_etcd}"):
        up.module.preflight(up.config)
    # the kubelet newer than the API server it talks to
    report_kubelet(plane, worker, "v1.21.0")
    up = Upgrade(plane, settings(plane, nodes, kubernetes="1.20.2", etcd=running_etcd))
    with pytest.raises(CommandExecutionError, match=rf"kubelet on {worker} \(1.21.0\) is newer than the API server"):
        up.module.preflight(up.config)


def test_preflight_refuses_an_unhealthy_cluster(plane, worker):
    # master02 is in the inventory but runs neither an API server nor an etcd member; worker02 never registered
    nodes = {
        "master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"},
        "master02": {"roles": ["master", "etcd"], "ip": "127.0.0.2"},
        worker: {"roles": ["worker"], "ip": "10.240.0.21"},
        "worker02": {"roles": ["worker"], "ip": "10.240.0.22"},
    }
    api(plane, "DELETE", "/api/v1/nodes/worker02", expect=(200, 404))
    api(
        plane,
        "PATCH",
        f"/api/v1/nodes/{worker}/status",
        {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "x"}]}},
        content_type="application/merge-patch+json",
    )
    up = Upgrade(plane, settings(plane, nodes, kubernetes="1.20.2", etcd=etcd_version(plane)))
    ret = up.states().preflight_passed("upgrade preflight", up.config)
    assert ret["result"] is False and ret["changes"] == {}
    for fragment in (
        "the API server on master02 is not ready",
        "etcd member master02 is not in the member list",
        f"node {worker} is NotReady: KubeletNotReady",
        "node worker02 is not registered",
    ):
        assert fragment in ret["comment"], ret["comment"]


def test_node_upgrade_cordons_finishes_after_an_interruption_and_then_changes_nothing(plane, worker):
    nodes = {"master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"}, worker: {"roles": ["worker"]}}
    nodes[worker]["ip"] = "10.240.0.21"
    up = Upgrade(plane, settings(plane, nodes, kubernetes="1.20.2", etcd=etcd_version(plane), containerd="1.7.24"))
    states = up.states()

    ret = up.states(test=True).preflight_passed("upgrade preflight", up.config)
    assert ret["result"] is None and ret["changes"]["plan"][0] == "etcd snapshot: taken first", ret
    fingerprint = up.module.targets(up.config)["fingerprint"]
    assert "containerd=1.7.24," in fingerprint and "kubernetes=1.20.2" in fingerprint
    assert f"node {worker}: never upgraded by k8s.upgrade -> {fingerprint}" in ret["comment"], ret["comment"]
    assert "etcd snapshot: taken first" in ret["comment"]

    pending = up.states(test=True).node_started(worker, up.config)
    assert pending["result"] is None and pending["changes"] == {"marked": True, "cordoned": True}
    assert not api(plane, "GET", f"/api/v1/nodes/{worker}")["spec"].get("unschedulable")  # test=True wrote nothing

    ret = states.node_started(worker, up.config, timeout=30)
    assert ret["result"] is True and ret["changes"] == {"marked": True, "cordoned": True}, ret
    live = api(plane, "GET", f"/api/v1/nodes/{worker}")
    assert live["spec"]["unschedulable"] is True
    assert live["metadata"]["annotations"]["kubesalt.io/upgrade-cordoned"] == "true"
    assert states.node_started(worker, up.config, timeout=30)["changes"] == {}

    # the kubelet still reports another version: the node stays cordoned, the run fails naming it
    report_kubelet(plane, worker, "v1.19.9")
    ret = states.node_finished(worker, up.config, timeout=10)
    assert ret["result"] is False and f"Node {worker} is Ready but its kubelet reports v1.19.9" in ret["comment"]
    assert api(plane, "GET", f"/api/v1/nodes/{worker}")["spec"]["unschedulable"] is True

    # the next run's plan finishes the interrupted node
    assert up.module.preflight(up.config)["nodes"][worker] == "cordoned by an interrupted upgrade: finish it"
    report_kubelet(plane, worker, "v1.20.2")
    report_ready(plane, worker)
    ret = states.node_finished(worker, up.config, timeout=30)
    assert ret["result"] is True and ret["changes"]["uncordoned"] is True, ret
    live = api(plane, "GET", f"/api/v1/nodes/{worker}")
    assert not live["spec"].get("unschedulable")
    annotations = live["metadata"]["annotations"]
    assert "kubesalt.io/upgrade-cordoned" not in annotations
    assert annotations["kubesalt.io/upgraded-to"] == fingerprint

    # second run: nothing pending, nothing changed (master01's Node recorded as upgraded as well)
    assert states.node_finished("master01", up.config, timeout=30)["result"] is True
    assert worker in up.module.preflight(up.config)["skipped"]
    ret = states.preflight_passed("upgrade preflight", up.config)
    assert ret["result"] is True and ret["changes"] == {} and ret["comment"].startswith("nothing to upgrade"), ret
    assert up.module.nodes_pending(up.config, [worker]) == []
    assert states.node_finished(worker, up.config)["changes"] == {}


def test_a_node_cordoned_by_hand_stays_cordoned(plane, worker):
    nodes = {"master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"}, worker: {"roles": ["worker"]}}
    nodes[worker]["ip"] = "10.240.0.21"
    up = Upgrade(plane, settings(plane, nodes, kubernetes="1.20.2", etcd=etcd_version(plane)))
    api(
        plane,
        "PATCH",
        f"/api/v1/nodes/{worker}",
        {"spec": {"unschedulable": True}},
        content_type="application/merge-patch+json",
    )
    states = up.states()
    assert states.node_started(worker, up.config, timeout=30)["changes"] == {"marked": True}
    ret = states.node_finished(worker, up.config, timeout=30)
    assert ret["result"] is True and "uncordoned" not in ret["changes"], ret
    live = api(plane, "GET", f"/api/v1/nodes/{worker}")
    assert live["spec"]["unschedulable"] is True
    assert "kubesalt.io/upgrade-cordoned" not in live["metadata"]["annotations"]


def test_node_patch_and_server_version(plane, kube, config, worker):
    assert kube.server_version(config, identity="admin") == "v1.20.2"
    assert kube.node_patch(config, worker, annotations={"example.com/a": "1"})["changed"] is True
    assert kube.node_patch(config, worker, annotations={"example.com/a": "1"})["changed"] is False
    assert kube.node_patch(config, worker, annotations={"example.com/a": None}, test=True)["changed"] is True
    assert api(plane, "GET", f"/api/v1/nodes/{worker}")["metadata"]["annotations"]["example.com/a"] == "1"
    assert kube.node_patch(config, worker, annotations={"example.com/a": None})["changed"] is True
    assert "example.com/a" not in (api(plane, "GET", f"/api/v1/nodes/{worker}")["metadata"].get("annotations") or {})
    assert kube.node_patch(config, worker, annotations={"example.com/b": None}, unschedulable=False)["changed"] is False
