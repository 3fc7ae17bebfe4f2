"""Node registration against a real kube-apiserver 1.20: the node's kubelet certificate creates its Node object, the
CA minion (admin) adds the role labels and the master taint from the pillar inventory; peer-publish refusals."""

import copy
import threading
import time

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.kube.conftest import register_kubelet, report_ready
from tests.support.loader import load

pytestmark = pytest.mark.kube
ADMIN = "kubernetes-admin"
WORKER = {"node-role.kubernetes.io/worker": ""}
MASTER_TAINT = {"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"}  # the 1.20 profile's


def node(kube, config, name):
    return kube.get(config, "Node", name)


# node_metadata ------------------------------------------------------------------------------------------------------
def test_node_metadata_of_a_master_and_a_worker(kube, config):
    assert kube.node_metadata(config, "master01") == {
        "labels": {"node-role.kubernetes.io/master": ""},
        "taints": [MASTER_TAINT],
    }
    assert kube.node_metadata(config, "worker01") == {"labels": WORKER, "taints": []}


def test_node_metadata_comes_from_the_pillar_inventory_not_from_grains(minions, plane):
    worker = minions.execution("worker01")
    worker.__grains__ = {"id": "worker01", "role": ["master"]}  # a minion sets its own grains
    config = plane.config("worker01")
    assert worker.node_metadata(config, "worker01") == {"labels": WORKER, "taints": []}
    promoted = copy.deepcopy(config)
    promoted["nodes"]["worker01"]["roles"] = ["master", "worker"]
    assert worker.node_metadata(promoted, "worker01") == {
        "labels": {"node-role.kubernetes.io/master": "", **WORKER},
        "taints": [MASTER_TAINT],
    }


def test_node_metadata_refuses_a_minion_outside_the_inventory(kube, config):
    with pytest.raises(CommandExecutionError, match="minion 'rogue01' is not in k8s:nodes"):
        kube.node_metadata(config, "rogue01")


# register_node ------------------------------------------------------------------------------------------------------
def test_register_node_labels_a_worker_then_changes_nothing(kube, config, plane):
    register_kubelet(plane, "worker01")
    first = kube.register_node(config, "worker01", timeout=10)
    assert first["changed"] is True and first["labels"] == WORKER and first["taints"] == []
    assert node(kube, config, "worker01")["metadata"]["labels"]["node-role.kubernetes.io/worker"] == ""
    mark = plane.audit_mark()
    second = kube.register_node(config, "worker01", timeout=10)
    assert second == {
        "node": "worker01",
        "changed": False,
        "labels": {},
        "taints": [],
        "comment": "Node worker01 has its labels and taints",
    }
    assert plane.writes(resource="nodes", since=mark, user=ADMIN) == []


def test_register_node_taints_a_master_and_keeps_the_taints_it_did_not_add(kube, config, plane):
    register_kubelet(plane, "master02")
    other = {"key": "example.org/maintenance", "effect": "PreferNoSchedule"}
    with plane.session() as admin:
        answer = admin.patch(
            f"{plane.server}/api/v1/nodes/master02",
            json={"spec": {"taints": [other]}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert answer.status_code == 200, answer.text
    result = kube.register_node(config, "master02", timeout=10)
    assert result["changed"] is True and result["taints"] == [MASTER_TAINT]
    live = node(kube, config, "master02")
    taints = [{"key": t["key"], "effect": t["effect"]} for t in live["spec"]["taints"]]
    assert other in taints and MASTER_TAINT in taints
    assert live["metadata"]["labels"]["node-role.kubernetes.io/master"] == ""
    assert kube.register_node(config, "master02", timeout=10)["changed"] is False


def test_register_node_waits_for_the_kubelet_to_register_the_node(kube, config, plane):
    result = {}
    thread = threading.Thread(target=lambda: result.update(kube.register_node(config, "worker02", timeout=30)))
    thread.start()
    time.sleep(2)
    assert thread.is_alive()  # still waiting: no Node worker02 yet
    register_kubelet(plane, "worker02")
    thread.join(35)
    assert result["changed"] is True and result["labels"] == WORKER


def test_register_node_gives_up_after_its_timeout_naming_the_node(kube, config):
    start = time.monotonic()
    with pytest.raises(CommandExecutionError) as error:
        kube.register_node(config, "master03", timeout=2)  # no kubelet ever registers master03 here
    assert 2 <= time.monotonic() - start < 6
    assert "waiting for Node master03: not done after 2 s" in str(error.value)
    assert "Node master03 is not registered" in str(error.value)


def test_register_node_with_test_true_reports_and_writes_nothing(minions, plane):
    kube = minions.execution("master01")
    config = plane.config("master01")
    register_kubelet(plane, "master01")
    mark = plane.audit_mark()
    result = kube.register_node(config, "master01", test=True)
    assert result["changed"] is True and result["taints"] == [MASTER_TAINT]
    assert "would be" in result["comment"]
    pending = kube.register_node(config, "master03", test=True)  # not registered yet: no wait in test mode
    assert pending["changed"] is True and "not registered yet" in pending["comment"]
    assert plane.writes(resource="nodes", since=mark, user=ADMIN) == []


def test_register_node_refuses_a_minion_outside_the_inventory(kube, config):
    with pytest.raises(CommandExecutionError, match="minion 'rogue01' is not in k8s:nodes"):
        kube.register_node(config, "rogue01", timeout=1)


# peer publish -------------------------------------------------------------------------------------------------------
def test_register_node_remote_registers_the_caller(minions, plane):
    register_kubelet(plane, "worker02")
    result = minions.execution("master01").register_node_remote(10, __pub_id="worker02")
    assert result["node"] == "worker02"
    assert (
        node(minions.execution("master01"), plane.config(), "worker02")["metadata"]["labels"][
            "node-role.kubernetes.io/worker"
        ]
        == ""
    )


def test_register_node_remote_refuses_a_call_without_pub_id(minions):
    with pytest.raises(CommandExecutionError, match="could not be identified \\(no __pub_id\\)"):
        minions.execution("master01").register_node_remote(10)


def test_register_node_remote_has_no_way_to_name_another_node(minions):
    with pytest.raises(TypeError):
        minions.execution("master01").register_node_remote(10, False, "worker01", __pub_id="worker02")
    with pytest.raises(SaltInvocationError, match="the node is always the caller"):
        minions.execution("master01").register_node_remote(minion_id="worker01", __pub_id="worker02")


def test_register_node_remote_refuses_a_caller_outside_the_inventory(minions):
    with pytest.raises(CommandExecutionError, match="minion 'rogue01' is not in k8s:nodes"):
        minions.execution("master01").register_node_remote(1, __pub_id="rogue01")


def test_register_node_remote_runs_only_on_the_ca_minion(minions):
    with pytest.raises(CommandExecutionError, match="not the CA minion"):
        minions.execution("master02").register_node_remote(1, __pub_id="worker01")


def test_register_node_local_refuses_peer_publish_calls_from_other_minions(minions):
    with pytest.raises(CommandExecutionError, match="may not be called through peer publish"):
        minions.execution("master01").register_node_local("worker01", __pub_id="worker01")


# readiness ----------------------------------------------------------------------------------------------------------
def test_nodes_ready_lists_each_node_that_is_not_ready_with_its_reason(kube, config, plane):
    register_kubelet(plane, "worker01")
    with pytest.raises(CommandExecutionError) as error:
        kube.nodes_ready(config, ["worker01", "master03"], timeout=1, interval=0.5)
    message = str(error.value)
    assert "worker01: NoReadyCondition" in message and "master03: NotRegistered" in message


@pytest.mark.parametrize("timeout", [10**6, -1, "forever", True])
def test_register_node_remote_holds_the_callers_timeout_to_the_ca_minions_own(minions, timeout):
    with pytest.raises(SaltInvocationError, match="waits at most k8s:timeouts:node_ready"):
        minions.execution("master01").register_node_remote(timeout, __pub_id="worker02")


def test_nodes_summarizes_every_node_with_its_roles_readiness_and_versions(kube, config, plane):
    register_kubelet(plane, "worker02")
    kube.register_node(config, "worker02", timeout=30)
    report_ready(plane, "worker02")
    summary = kube.nodes(config)["worker02"]
    assert summary["ready"] is True and summary["reason"] == "KubeletReady"
    assert summary["roles"] == ["worker"]
    # what nodeInfo says (a kubelet reports it; none runs here, so it is empty)
    assert summary["kubelet_version"] == "" and summary["runtime_version"] == ""
    # a master that is not the CA minion reads them with its apiserver-kubelet-client certificate, once the cluster
    # objects bind its group to system:kubelet-api-admin
    for manifest in load("k8s_conf").cluster_objects(config):
        kube.apply(config, manifest)
    assert "worker02" in kube.nodes(config, identity="apiserver-kubelet-client")
