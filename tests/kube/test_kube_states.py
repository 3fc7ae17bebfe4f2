"""k8s_kube states against a real kube-apiserver 1.20, loaded like a minion loads them (tests/support/loader.py):
compare -> act -> report, test=True touches nothing, a second run changes nothing."""

import time

import pytest

from tests.kube.conftest import register_kubelet, report_ready
from tests.kube.test_kube_objects import coredns_objects
from tests.support import etcd_cluster

pytestmark = pytest.mark.kube
ADMIN = "kubernetes-admin"
NS = "kubesalt-states"


@pytest.fixture(scope="module")
def ns(kube, config):
    kube.apply(config, {"kind": "Namespace", "metadata": {"name": NS}})
    return NS


def configmap(name, value="1", namespace=NS):
    return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": {"v": value}}


# object_present / objects_present -----------------------------------------------------------------------------------
def test_object_present_creates_then_reports_no_change(minions, plane, ns, name):
    states, config = minions.states("master01"), plane.config()
    ret = states.object_present("demo", configmap(name), config=config)
    assert ret["result"] is True and ret["changes"] == {"action": "created"}
    assert ret["comment"] == f"ConfigMap {ns}/{name} created."
    mark = plane.audit_mark()
    again = states.object_present("demo", configmap(name), config=config)
    assert again["result"] is True and again["changes"] == {}
    assert plane.writes(since=mark, user=ADMIN) == []


def test_object_present_reports_the_updated_fields(minions, plane, ns, name):
    states, config = minions.states("master01"), plane.config()
    states.object_present("demo", configmap(name, "1"), config=config)
    ret = states.object_present("demo", configmap(name, "2"), config=config)
    assert ret["result"] is True
    assert ret["changes"] == {"action": "updated", "diff": {"data.v": {"old": "1", "new": "2"}}}


def test_object_present_with_test_true_returns_none_and_writes_nothing(minions, plane, ns, name):
    config = plane.config()
    mark = plane.audit_mark()
    ret = minions.states("master01", test=True).object_present("demo", configmap(name), config=config)
    assert ret["result"] is None and ret["changes"] == {"action": "created"}
    assert "would be created" in ret["comment"]
    assert plane.writes(since=mark, user=ADMIN) == []
    assert minions.execution("master01").get(config, configmap(name)) is None


def test_object_present_fails_with_the_reason(minions, plane):
    ret = minions.states("master01").object_present(
        "demo", configmap("x", namespace="no-such-ns"), config=plane.config()
    )
    assert ret["result"] is False and ret["changes"] == {}
    assert "ConfigMap no-such-ns/x" in ret["comment"] and "HTTP 404" in ret["comment"]


def test_objects_present_applies_a_list_keyed_by_kind_namespace_and_name(minions, plane, ns, name):
    states, config = minions.states("master01"), plane.config()
    manifests = [
        {"kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}},
        {
            "kind": "Role",
            "metadata": {"name": name, "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        },
        {
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        },
        {
            "kind": "ClusterRole",
            "metadata": {"name": f"kubesalt-{name}"},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}],
        },
    ]
    before = plane.audit_mark()
    test_ret = minions.states("master01", test=True).objects_present("rbac", manifests, config=config)
    assert test_ret["result"] is None and len(test_ret["changes"]) == 4
    assert plane.writes(since=before, user=ADMIN) == []
    ret = states.objects_present("rbac", manifests, config=config)
    assert ret["result"] is True
    assert ret["changes"] == {
        f"ServiceAccount/{ns}/{name}": {"action": "created"},
        f"Role/{ns}/{name}": {"action": "created"},
        f"RoleBinding/{ns}/{name}": {"action": "created"},
        f"ClusterRole/kubesalt-{name}": {"action": "created"},
    }
    mark = plane.audit_mark()
    again = states.objects_present("rbac", manifests, config=config)
    assert again["result"] is True and again["changes"] == {}
    assert again["comment"] == "0 of 4 objects created or updated, 4 as wanted."
    assert plane.writes(since=mark, user=ADMIN) == []


def test_objects_present_stops_at_the_first_failure_and_reports_what_it_changed(minions, plane, ns, name):
    manifests = [configmap(name), configmap(name, namespace="no-such-ns"), configmap(f"{name}-after")]
    ret = minions.states("master01").objects_present("list", manifests, config=plane.config())
    assert ret["result"] is False
    assert ret["changes"] == {f"ConfigMap/{ns}/{name}": {"action": "created"}}
    assert ret["comment"].startswith("ConfigMap/no-such-ns/" + name)
    assert minions.execution("master01").get(plane.config(), configmap(f"{name}-after")) is None


def test_objects_present_refuses_a_list_with_an_unknown_kind_before_applying_any(minions, plane, ns, name):
    mark = plane.audit_mark()
    manifests = [configmap(name), {"kind": "Ingress", "metadata": {"name": name, "namespace": ns}}]
    ret = minions.states("master01").objects_present("list", manifests, config=plane.config())
    assert ret["result"] is False and "unknown kind 'Ingress'" in ret["comment"]
    assert plane.writes(since=mark, user=ADMIN) == []


def test_the_coredns_objects_through_the_state_converge_in_one_run(minions, plane):
    states, config = minions.states("master01"), plane.config()
    objects = coredns_objects(config)
    ret = states.objects_present("cluster DNS", objects, config=config)
    assert ret["result"] is True, ret
    again = states.objects_present("cluster DNS", objects, config=config)
    assert again["result"] is True and again["changes"] == {}


# waits --------------------------------------------------------------------------------------------------------------
def test_api_ready_succeeds_without_changes_also_in_test_mode(minions, plane):
    for test in (False, True):
        ret = minions.states("worker01", test=test).api_ready(
            "api", config=plane.config("worker01"), identity="kubelet"
        )
        assert ret["result"] is True and ret["changes"] == {}, ret


def test_api_ready_fails_in_bounded_time_against_a_closed_port(minions, plane):
    server = f"https://127.0.0.1:{etcd_cluster.free_ports(1)[0]}"
    start = time.monotonic()
    ret = minions.states("master01").api_ready("api", config=plane.config(), timeout=2, server=server)
    assert 2 <= time.monotonic() - start < 6
    assert ret["result"] is False and "not done after 2 s" in ret["comment"] and server in ret["comment"]
    pending = minions.states("master01", test=True).api_ready("api", config=plane.config(), server=server)
    assert pending["result"] is None and "a real run would wait" in pending["comment"]


def test_node_ready_and_nodes_ready_states(minions, plane):
    register_kubelet(plane, "worker01")
    config = plane.config("worker01")
    failed = minions.states("worker01").node_ready("node worker01 is Ready", config=config, timeout=1)
    assert failed["result"] is False and "worker01: NoReadyCondition" in failed["comment"]
    pending = minions.states("worker01", test=True).node_ready("node worker01 is Ready", config=config)
    assert pending["result"] is None and pending["changes"] == {}
    report_ready(plane, "worker01")
    ret = minions.states("worker01").node_ready("node worker01 is Ready", config=config, timeout=10)
    assert ret["result"] is True and ret["changes"] == {} and ret["comment"] == "Node worker01 is Ready."
    other = minions.states("master01").node_ready(
        "worker01 from master01", config=plane.config(), node="worker01", identity="admin", timeout=5
    )
    assert other["result"] is True
    both = minions.states("master01").nodes_ready("nodes", ["worker01", "master03"], config=plane.config(), timeout=1)
    assert both["result"] is False and "master03: NotRegistered" in both["comment"]
    assert "worker01" not in both["comment"].split("not Ready:")[1]
    one = minions.states("master01").nodes_ready("nodes", ["worker01"], config=plane.config(), timeout=5)
    assert one["result"] is True and one["changes"] == {}


def test_deployment_available_state(minions, plane, ns, name):
    kube, config = minions.execution("master01"), plane.config()
    labels = {"app": name}
    manifest = {
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:1"}]},
            },
        },
    }
    kube.apply(config, manifest)
    ret = minions.states("master01").deployment_available(name, ns, config=config, timeout=2)
    assert ret["result"] is False and f"Deployment {ns}/{name}" in ret["comment"]
    pending = minions.states("master01", test=True).deployment_available(name, ns, config=config)
    assert pending["result"] is None
    manifest["spec"]["replicas"] = 0
    kube.apply(config, manifest)
    ret = minions.states("master01").deployment_available(name, ns, config=config, timeout=30)
    assert ret["result"] is True and ret["changes"] == {}


# node_registered ----------------------------------------------------------------------------------------------------
def unlabel(plane, node):
    """Strip kubesalt's role labels and taints from ``node`` (as admin), so registration has work to do."""
    with plane.session() as admin:
        answer = admin.patch(
            f"{plane.server}/api/v1/nodes/{node}",
            json={
                "metadata": {"labels": {f"node-role.kubernetes.io/{r}": None for r in ("master", "worker")}},
                "spec": {"taints": None},
            },
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert answer.status_code == 200, answer.text


def test_node_registered_on_a_worker_goes_through_peer_publish_to_the_ca_minion(minions, plane):
    register_kubelet(plane, "worker02")
    unlabel(plane, "worker02")
    config = plane.config("worker02")
    ret = minions.states("worker02").node_registered("worker02", config=config, timeout=10)
    assert ret["result"] is True, ret
    assert minions.published[-1][:3] == ("worker02", "master01", "k8s_kube.register_node_remote")
    mark, sent = plane.audit_mark(), len(minions.published)
    again = minions.states("worker02").node_registered("worker02", config=config, timeout=10)
    assert again["result"] is True and again["changes"] == {}
    assert plane.writes(resource="nodes", since=mark, user=ADMIN) == []
    # A registered node checks with its own kubelet credentials and sends no peer publish at all.
    assert len(minions.published) == sent


def test_node_registered_reports_the_labels_it_added_and_test_mode_writes_nothing(minions, plane):
    register_kubelet(plane, "master02")
    config = plane.config("master02")
    with plane.session() as admin:  # start from a node without kubesalt's labels and taints
        answer = admin.patch(
            f"{plane.server}/api/v1/nodes/master02",
            json={"metadata": {"labels": {"node-role.kubernetes.io/master": None}}, "spec": {"taints": None}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert answer.status_code == 200, answer.text
    mark = plane.audit_mark()
    pending = minions.states("master02", test=True).node_registered("master02", config=config, timeout=10)
    assert pending["result"] is None
    assert pending["changes"] == {
        "labels": {"node-role.kubernetes.io/master": ""},
        "taints": [{"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"}],
    }
    assert plane.writes(resource="nodes", since=mark, user=ADMIN) == []
    ret = minions.states("master02").node_registered("master02", config=config, timeout=10)
    assert ret["result"] is True and ret["changes"] == pending["changes"]


def test_node_registered_on_the_ca_minion_registers_locally(minions, plane):
    register_kubelet(plane, "master01")
    published = len(minions.published)
    ret = minions.states("master01").node_registered("master01", config=plane.config(), timeout=10)
    assert ret["result"] is True, ret
    assert len(minions.published) == published  # no peer publish on the CA minion
    again = minions.states("master01").node_registered("master01", config=plane.config(), timeout=10)
    assert again["changes"] == {}


def test_node_registered_without_a_peer_rule_fails_naming_the_rule_to_add(minions, plane):
    register_kubelet(plane, "worker01")
    unlabel(plane, "worker01")
    minions.peer_allowed = r"^master"  # the master drops the worker's call: it answers {}
    ret = minions.states("worker01").node_registered("worker01", config=plane.config("worker01"), timeout=2)
    assert ret["result"] is False
    assert "peer" in ret["comment"] and "'k8s_kube.register_node_remote'" in ret["comment"]
    assert "minion 'worker01'" in ret["comment"]


def test_node_registered_on_a_worker_registers_that_worker_whatever_the_state_is_called(minions, plane):
    register_kubelet(plane, "worker01")
    unlabel(plane, "worker01")
    ret = minions.states("worker01").node_registered(
        "node worker02 registered", config=plane.config("worker01"), timeout=5
    )
    assert ret["result"] is True and "worker01" in ret["comment"]
    assert minions.published[-1][:3] == ("worker01", "master01", "k8s_kube.register_node_remote")


def test_node_registered_reports_the_ca_minions_refusal(minions, plane):
    register_kubelet(plane, "worker01")
    unlabel(plane, "worker01")
    config = plane.config("worker01")
    config["cluster"]["ca_minion"] = "master02"  # a stale view: master02 is not the CA minion
    ret = minions.states("worker01").node_registered("worker01", config=config, timeout=2)
    assert ret["result"] is False and "refused" in ret["comment"] and "not the CA minion" in ret["comment"]


# objects_absent ------------------------------------------------------------------------------------------------------
def test_objects_absent_deletes_then_changes_nothing_and_test_mode_keeps_them(minions, plane, ns, name):
    config = plane.config()
    objects = [configmap(f"{name}-a"), configmap(f"{name}-b")]
    assert minions.states("master01").objects_present("up", objects, config=config)["result"] is True
    dry = minions.states("master01", test=True).objects_absent("gone", objects, config=config)
    assert dry["result"] is None and len(dry["changes"]) == 2
    kube = minions.execution("master01")
    assert kube.get(config, objects[0]) is not None, "test=True deleted an object"
    ret = minions.states("master01").objects_absent("gone", objects, config=config)
    assert ret["result"] is True and sorted(ret["changes"]) == [f"ConfigMap/{NS}/{name}-a", f"ConfigMap/{NS}/{name}-b"]
    assert kube.get(config, objects[0]) is None and kube.get(config, objects[1]) is None
    again = minions.states("master01").objects_absent("gone", objects, config=config)
    assert again["result"] is True and again["changes"] == {}
