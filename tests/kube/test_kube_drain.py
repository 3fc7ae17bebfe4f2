"""Node removal against a real kube-apiserver 1.20 + kube-controller-manager: cordon, drain through the Eviction API
with a PodDisruptionBudget the API server enforces (evictions refused -> the drain gives up after its timeout and
names the pods), a pod without a controller stops the drain before anything is evicted, then the Node is deleted.
The pods are a ReplicaSet's, bound to the node by their template's nodeName (there is no kubelet here), with a grace
period of 0 so that an eviction deletes them at once."""

import time

import pytest

pytestmark = pytest.mark.kube
NS = "kubesalt-drain"


def api(plane, method, path, body=None, expect=(200, 201)):
    with plane.session() as admin:
        answer = admin.request(method, f"{plane.server}{path}", json=body, timeout=10)
    assert answer.status_code in expect, f"{method} {path}: {answer.status_code} {answer.text}"
    return answer.json() if answer.text else None


@pytest.fixture
def node(plane, name):
    """A Node object of its own (created by the admin, as a kubelet would register it) and a namespace."""
    node_name = f"drain-{abs(hash(name)) % 10**8}"
    api(plane, "POST", "/api/v1/nodes", {"metadata": {"name": node_name}})
    api(plane, "POST", "/api/v1/namespaces", {"metadata": {"name": NS}}, expect=(201, 409))
    yield node_name
    api(plane, "DELETE", f"/api/v1/nodes/{node_name}", expect=(200, 404))


def replicaset(plane, node, app, replicas=2):
    template = {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "kubesalt.lab/busybox:1.35", "command": ["sleep", "3600"]}],
        },
    }
    body = {
        "metadata": {"name": app, "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}}, "template": template},
    }
    api(plane, "POST", f"/apis/apps/v1/namespaces/{NS}/replicasets", body)
    return app


def pods_on(plane, node):
    items = api(plane, "GET", f"/api/v1/pods?fieldSelector=spec.nodeName={node}")["items"]
    return sorted(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in items)


def wait_for_pods(plane, node, count, timeout=60):
    """The ReplicaSet's pods on ``node``, reported Running (not Ready) as their kubelet would: the API server ignores
    disruption budgets for Pending pods."""
    deadline = time.monotonic() + timeout
    while len(pods_on(plane, node)) < count:
        assert time.monotonic() < deadline, f"the ReplicaSet controller made no {count} pods on {node}"
        time.sleep(0.5)
    pods = pods_on(plane, node)
    for ref in pods:
        namespace, pod = ref.split("/")
        with plane.session() as admin:
            answer = admin.patch(
                f"{plane.server}/api/v1/namespaces/{namespace}/pods/{pod}/status",
                json={"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}},
                headers={"Content-Type": "application/merge-patch+json"},
                timeout=10,
            )
        assert answer.status_code == 200, answer.text
    return pods


def test_drain_honours_a_pod_disruption_budget_then_evicts_when_it_allows(kube, config, plane, node, name):
    app = replicaset(plane, node, f"{name[:40]}-pdb")
    before = wait_for_pods(plane, node, 2)
    # minAvailable 1 of 2 pods that are not Ready (no kubelet): the budget allows no disruption at all
    pdb = {
        "metadata": {"name": app, "namespace": NS},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}},
    }
    api(plane, "POST", f"/apis/policy/v1beta1/namespaces/{NS}/poddisruptionbudgets", pdb)
    started = time.monotonic()
    with pytest.raises(Exception, match=r"not done after 6 s.*disruption budget") as refused:
        kube.drain(config, node, timeout=6, interval=1)
    assert 6 <= time.monotonic() - started < 30
    assert all(ref in str(refused.value) for ref in before)
    assert pods_on(plane, node) == before  # nothing evicted
    assert api(plane, "GET", f"/api/v1/nodes/{node}")["spec"]["unschedulable"] is True  # but cordoned
    api(plane, "DELETE", f"/apis/policy/v1beta1/namespaces/{NS}/poddisruptionbudgets/{app}")
    done = kube.drain(config, node, timeout=60, interval=1)
    assert done["cordoned"] is False and sorted(done["evicted"]) == before
    assert not set(before) & set(pods_on(plane, node))  # the evicted pods are gone (the ReplicaSet makes new ones)
    api(plane, "DELETE", f"/apis/apps/v1/namespaces/{NS}/replicasets/{app}")


def test_a_pod_without_a_controller_stops_the_drain_before_anything_changes(kube, config, plane, node, name):
    pod = {
        "metadata": {"name": f"{name[:40]}-bare", "namespace": NS},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "kubesalt.lab/busybox:1.35"}]},
    }
    api(plane, "POST", f"/api/v1/namespaces/{NS}/pods", pod)
    with pytest.raises(Exception, match=rf"pods without a controller would be deleted for good: {NS}/{name[:40]}-bare"):
        kube.drain(config, node, timeout=5)
    assert not api(plane, "GET", f"/api/v1/nodes/{node}")["spec"].get("unschedulable")
    api(plane, "DELETE", f"/api/v1/namespaces/{NS}/pods/{name[:40]}-bare?gracePeriodSeconds=0")


def test_node_drained_and_node_absent_states_report_then_act_then_change_nothing(minions, plane, config, node, name):
    app = replicaset(plane, node, f"{name[:40]}-st", replicas=1)
    before = wait_for_pods(plane, node, 1)
    mark = plane.audit_mark()
    dry = minions.states("master01", test=True).node_drained(node, config=config, timeout=30)
    assert dry["result"] is None and dry["changes"] == {"cordoned": True, "evicted": before}
    assert plane.writes(since=mark) == []
    done = minions.states("master01").node_drained(node, config=config, timeout=30)
    assert done["result"] is True and done["changes"] == {"cordoned": True, "evicted": before}, done
    api(plane, "DELETE", f"/apis/apps/v1/namespaces/{NS}/replicasets/{app}")  # no replacement pods
    for pod in pods_on(plane, node):
        api(plane, "DELETE", f"/api/v1/namespaces/{pod.replace('/', '/pods/')}?gracePeriodSeconds=0", expect=(200, 404))
    again = minions.states("master01").node_drained(node, config=config, timeout=30)
    assert again["result"] is True and again["changes"] == {}, again
    dry = minions.states("master01", test=True).node_absent(node, config=config)
    assert dry["result"] is None and dry["changes"] == {"deleted": f"Node {node}"}
    assert api(plane, "GET", f"/api/v1/nodes/{node}")["metadata"]["name"] == node
    gone = minions.states("master01").node_absent(node, config=config)
    assert gone["result"] is True and gone["changes"] == {"deleted": f"Node {node}"}
    api(plane, "GET", f"/api/v1/nodes/{node}", expect=(404,))
    assert minions.states("master01").node_absent(node, config=config)["changes"] == {}
    assert minions.states("master01").node_drained(node, config=config)["changes"] == {}
