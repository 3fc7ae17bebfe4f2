"""The lab cluster, end to end, for real: what `salt-run state.orchestrate k8s.cluster` built on systemd-nspawn
nodes. Tests run in file order: read-only checks first, then the re-run, a node restart and a new worker.
What cannot run here is reported as skipped with "not exercised", never as passed. The tests marked `core` are the
set CI runs on every submission (`make lab-test-core`, `.ci/run`)."""

import base64
import ipaddress
import json

import pytest
import requests

from tests.lab.conftest import kubectl, kubectl_json, lab, node_root, session_for, wait_for
from tests.lab.traffic import BUSYBOX, web_manifest

pytestmark = pytest.mark.lab


def nodes_by_name():
    return {n["metadata"]["name"]: n for n in kubectl_json("get", "nodes")["items"]}


def ready(node):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def http_get(pod, url_host, port=8080):
    """GET / from inside ``pod`` with busybox nc (busybox-static's wget crashes resolving even a literal IP)."""
    out = kubectl("exec", pod, "--", "sh", "-c", f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 5 {url_host} {port}')
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")  # text mode may already have dropped the \r
    assert head.startswith("HTTP/1.") and " 200 " in head.splitlines()[0], out
    return body.strip()


def pod_cidr(inventory, node_id):
    return ipaddress.ip_network(f"10.200.{int(inventory[node_id]['ip'].rsplit('.', 1)[1])}.0/24")


# -- nodes, etcd, secrets ---------------------------------------------------------------------------------------------
@pytest.mark.core
def test_every_node_is_ready_with_role_labels_and_masters_are_tainted(inventory, masters):
    nodes = nodes_by_name()
    assert sorted(nodes) == sorted(inventory)
    for name, node in nodes.items():
        assert ready(node), (name, node["status"]["conditions"])
        labels = node["metadata"]["labels"]
        for role in ("master", "worker"):
            if role in inventory[name]["roles"]:
                assert f"node-role.kubernetes.io/{role}" in labels, (name, labels)
        taints = {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}
        assert (("node-role.kubernetes.io/master", "NoSchedule") in taints) == (name in masters), (name, taints)


def test_etcd_is_healthy_over_tls_and_refuses_a_client_without_a_certificate(inventory, masters):
    for master in masters:
        url = f"https://{inventory[master]['ip']}:2379/health"
        health = session_for(master, "etcd-healthcheck-client", ca="etcd-ca").get(url, timeout=10)
        assert health.status_code == 200 and health.json()["health"] == "true", health.text
        with pytest.raises(requests.exceptions.SSLError):
            session_for(master, None, ca="etcd-ca").get(url, timeout=10)


@pytest.mark.core
def test_a_secret_is_stored_encrypted_in_etcd(inventory, masters):
    kubectl(
        "apply",
        "-f",
        "-",
        input=kubectl(
            "create",
            "secret",
            "generic",
            "lab-secret",
            "--from-literal=password=kubesalt-plain-text",
            "--dry-run=client",
            "-o",
            "yaml",
        ),
    )
    key = base64.b64encode(b"/registry/secrets/default/lab-secret").decode()
    etcd = session_for(masters[0], "apiserver-etcd-client", ca="etcd-ca")
    answer = etcd.post(f"https://{inventory[masters[0]]['ip']}:2379/v3/kv/range", json={"key": key}, timeout=10)
    value = base64.b64decode(answer.json()["kvs"][0]["value"])
    assert value.startswith(b"k8s:enc:secretbox:v1:key1:"), value[:40]
    assert b"kubesalt-plain-text" not in value


def test_a_worker_kubelet_cannot_list_secrets_cluster_wide(inventory, workers):
    api = f"https://{inventory['master01']['ip']}:6443"
    kubelet = session_for(workers[0], "kubelet")
    assert kubelet.get(f"{api}/api/v1/secrets", timeout=10).status_code == 403
    assert kubelet.get(f"{api}/api/v1/nodes/{workers[0]}", timeout=10).status_code == 200


def test_only_the_ca_master_holds_ca_keys_and_admin_credentials(inventory, masters):
    for node_id in inventory:
        pki = node_root(node_id) / "etc/kubernetes/pki"
        is_ca = node_id == masters[0]
        assert (pki / "ca" / "kubernetes-ca.key").exists() == is_ca, node_id
        assert (pki / "admin.key").exists() == is_ca, node_id
        assert (node_root(node_id) / "etc/kubernetes/admin.conf").exists() == is_ca, node_id


# -- workloads ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def web(workers, inventory):
    """A Deployment with one pod per worker (anti-affinity), serving its pod name over HTTP, and a NodePort
    Service in front of it."""
    manifest = web_manifest("default", replicas=len(workers), node_port=30080, budget=False)
    kubectl("apply", "-f", "-", input=manifest)

    def running():
        pods = kubectl_json("get", "pods", "-l", "app=web")["items"]
        up = [
            p
            for p in pods
            if p["status"].get("phase") == "Running"
            and p["status"].get("podIP")
            and all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}])
        ]
        return up if len(up) == len(workers) else None

    pods = wait_for(running, 240, "the web pods to run on every worker")
    yield {p["spec"]["nodeName"]: p for p in pods}


@pytest.mark.core
def test_pods_spread_over_the_workers_with_ips_from_each_node_pod_cidr(web, workers, inventory):
    assert sorted(web) == workers
    for node, pod in web.items():
        assert ipaddress.ip_address(pod["status"]["podIP"]) in pod_cidr(inventory, node), (node, pod["status"])


@pytest.mark.core
def test_pod_to_pod_across_nodes(web):
    (a_node, a), (b_node, b) = sorted(web.items())[:2]
    out = http_get(a["metadata"]["name"], b["status"]["podIP"])
    assert out == b["metadata"]["name"], (a_node, b_node, out)


@pytest.mark.core
def test_cluster_ip_service_answers_from_a_pod(web):
    ip = kubectl_json("get", "service", "web")["spec"]["clusterIP"]
    pod = next(iter(web.values()))["metadata"]["name"]
    names = {p["metadata"]["name"] for p in web.values()}
    seen = set()
    for _ in range(12):
        seen.add(http_get(pod, ip, 80))
    assert seen <= names and seen, seen


@pytest.mark.core
def test_node_port_answers_from_the_host_on_every_worker(web, workers, inventory):
    names = {p["metadata"]["name"] for p in web.values()}
    for worker in workers:
        s = requests.Session()
        s.trust_env = False
        answer = s.get(f"http://{inventory[worker]['ip']}:30080/", timeout=10)
        assert answer.status_code == 200 and answer.text.strip() in names, (worker, answer.text)


@pytest.mark.core
def test_kubectl_logs_and_exec_reach_the_kubelets(web):
    pod = next(iter(web.values()))["metadata"]["name"]
    assert "started" in kubectl("logs", pod)
    assert kubectl("exec", pod, "--", "cat", "/www/index.html").strip() == pod


def test_coredns_is_not_exercised():
    pytest.skip(
        "not exercised: no CoreDNS image can be obtained on this machine (its objects are applied and "
        "accepted by the API server; the pods cannot start)"
    )


def test_flannel_is_not_exercised():
    pytest.skip("not exercised: no flanneld binary can be obtained on this machine; the lab runs network mode routes")


# -- re-run, reboot, a new worker --------------------------------------------------------------------------------------
@pytest.mark.core
def test_a_second_orchestration_changes_nothing_on_any_minion():
    out = lab("salt-run", "--out=json", "state.orchestrate", "k8s.cluster", timeout=1800)
    data = json.loads(out.stdout)
    steps = next(iter(data["data"].values()))
    changed = {}
    for sid, step in steps.items():
        assert step["result"], (sid, step.get("comment"))
        for minion, states in ((step.get("changes") or {}).get("ret") or {}).items():
            for state_id, state in (states or {}).items():
                if isinstance(state, dict) and state.get("changes"):
                    changed.setdefault(minion, []).append(state_id)
    assert changed == {}, changed


def test_a_restarted_worker_converges_by_itself_and_is_ready(workers):
    worker = workers[-1]
    lab("node-restart", worker, timeout=900)
    wait_for(lambda: ready(nodes_by_name()[worker]), 300, f"{worker} Ready after its restart")


def test_a_new_worker_joins_with_state_apply(inventory):
    new = f"worker{max(int(n[6:]) for n in inventory if n.startswith('worker')) + 1:02d}"
    lab("add-worker", new, timeout=900)
    out = lab("salt", "--out=json", "--static", new, "state.apply", "k8s.worker", timeout=900)
    states = json.loads(out.stdout)[new]
    failed = {k: v["comment"] for k, v in states.items() if v["result"] is False}
    assert not failed, failed
    wait_for(lambda: ready(nodes_by_name()[new]), 300, f"{new} Ready")
    labels = nodes_by_name()[new]["metadata"]["labels"]
    assert "node-role.kubernetes.io/worker" in labels
    # The other nodes route to the new node's pod subnet once their pod network state is applied again (network
    # mode routes: each node's routes come from the pillar inventory).
    out = lab("salt", "--out=json", "--static", "-C", "G@role:master or G@role:worker", "state.apply", "k8s.network")
    for minion, states in json.loads(out.stdout).items():
        assert all(s["result"] for s in states.values()), (minion, states)
    pod = kubectl_json("get", "pods", "-l", "app=web", "--field-selector", "spec.nodeName=worker01")["items"][0]
    kubectl(
        "run",
        "lab-new-node",
        f"--image={BUSYBOX}",
        "--image-pull-policy=Never",
        "--restart=Never",
        f"--overrides={json.dumps({'spec': {'nodeName': new}})}",
        "--",
        "sh",
        "-c",
        "mkdir -p /www && echo lab-new-node > /www/index.html && exec httpd -f -p 8080 -h /www",
    )
    try:
        target = wait_for(
            lambda: (
                kubectl_json("get", "pod", "lab-new-node")["status"].get("podIP")
                if kubectl_json("get", "pod", "lab-new-node")["status"].get("phase") == "Running"
                else None
            ),
            120,
            "a pod on the new worker",
        )
        address = next(a["address"] for a in nodes_by_name()[new]["status"]["addresses"] if a["type"] == "InternalIP")
        assert ipaddress.ip_address(target) in pod_cidr({new: {"ip": address}}, new)
        assert wait_for(
            lambda: http_get(pod["metadata"]["name"], target) == "lab-new-node", 30, "worker01 -> pod on the new worker"
        )
    finally:
        kubectl("delete", "pod", "lab-new-node", "--wait=false", check=False)
