"""k8s_kube against a real kube-apiserver 1.20: readiness, and what each kubesalt certificate may do there."""

import time

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import kubeapi
from tests.support import etcd_cluster

pytestmark = pytest.mark.kube


def test_the_api_server_is_the_real_1_20_build(plane):
    session = plane.session()
    assert session.get(f"{plane.server}/version").json()["gitVersion"] == "v1.20.2"


def test_readyz_is_true_on_a_master_with_its_own_api_server_by_default(kube, config, plane):
    answer = kube.readyz(config)
    assert answer["ready"] is True and answer["status"] == 200 and answer["failed"] == []
    assert answer["url"] == f"https://127.0.0.1:{plane.port}/readyz"  # a master asks its own API server


def test_readyz_from_a_worker_uses_its_kubelet_certificate_and_the_api_endpoint(minions, plane):
    config = plane.config("worker01")
    answer = minions.execution("worker01").readyz(config, identity="kubelet")
    assert answer["ready"] is True and answer["url"] == f"{config['cluster']['apiserver_url']}/readyz"


def test_wait_ready_returns_at_once_when_ready(kube, config):
    answer = kube.wait_ready(config, timeout=10)
    assert answer["ready"] is True and answer["waited"] < 5


def test_wait_ready_against_a_closed_port_fails_within_its_timeout_naming_the_url(kube, config):
    port = etcd_cluster.free_ports(1)[0]
    start = time.monotonic()
    with pytest.raises(CommandExecutionError) as error:
        kube.wait_ready(config, timeout=3, server=f"https://127.0.0.1:{port}", interval=0.5)
    assert 3 <= time.monotonic() - start < 6
    message = str(error.value)
    assert f"https://127.0.0.1:{port}/readyz" in message and "not done after 3 s" in message
    assert "Connection refused" in message


def test_readyz_of_a_closed_port_is_not_ready_with_the_reason(kube, config):
    port = etcd_cluster.free_ports(1)[0]
    answer = kube.readyz(config, server=f"https://127.0.0.1:{port}")
    assert answer["ready"] is False and "Connection refused" in answer["error"]


def test_a_missing_certificate_is_refused_naming_the_file_and_identity(minions, plane):
    config = plane.config("worker01")  # workers hold no admin certificate
    with pytest.raises(SaltInvocationError) as error:
        minions.execution("worker01").get(config, "Namespace", "kube-system")
    assert "identity 'admin'" in str(error.value) and "admin.crt does not exist" in str(error.value)


def test_a_certificate_from_another_ca_is_not_accepted(kube, config, plane, tmp_path):
    rogue = etcd_cluster.Pki(tmp_path, common_name="rogue-ca")
    cert, key = rogue.issue("admin", "kubernetes-admin")
    client = kubeapi.KubeClient(plane.server, str(plane.pki_dir / "kubernetes-ca.crt"), cert, key)
    with client, pytest.raises(CommandExecutionError) as error:
        client.request("GET", "/api/v1/namespaces")
    assert "HTTP 401" in str(error.value) and cert in str(error.value)


# What the node identities may do (Node authorizer + NodeRestriction) ------------------------------------------------
def test_a_kubelet_certificate_cannot_list_secrets_cluster_wide(minions, plane):
    config = plane.config("worker01")
    with pytest.raises(CommandExecutionError) as error:
        minions.execution("worker01").get(config, "Secret", identity="kubelet")
    message = str(error.value)
    assert "HTTP 403" in message and 'User "system:node:worker01" cannot list resource "secrets"' in message


def test_a_kubelet_may_create_its_own_node_and_modify_no_other(plane):
    with plane.session("kubelet", "worker01") as kubelet:
        created = kubelet.post(f"{plane.server}/api/v1/nodes", json={"metadata": {"name": "worker01"}})
        assert created.status_code in (201, 409), created.text  # 409: another test created it first
        other = kubelet.post(f"{plane.server}/api/v1/nodes", json={"metadata": {"name": "worker09"}})
    assert other.status_code == 403
    assert 'node "worker01" is not allowed to modify node "worker09"' in other.json()["message"]
    with plane.session("kubelet", "worker02") as kubelet:
        patched = kubelet.patch(
            f"{plane.server}/api/v1/nodes/worker01",
            json={"metadata": {"labels": {"a": "b"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
    assert patched.status_code == 403
    assert 'node "worker02" is not allowed to modify node "worker01"' in patched.json()["message"]


def test_a_kubelet_may_not_give_itself_a_role_label_which_is_why_the_ca_minion_does_it(plane):
    with plane.session("kubelet", "worker01") as kubelet:
        kubelet.post(f"{plane.server}/api/v1/nodes", json={"metadata": {"name": "worker01"}})
        patched = kubelet.patch(
            f"{plane.server}/api/v1/nodes/worker01",
            json={"metadata": {"labels": {"node-role.kubernetes.io/worker": ""}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
    assert patched.status_code == 403
    assert "is not allowed to modify labels: node-role.kubernetes.io/worker" in patched.json()["message"]


def test_node_ready_with_the_nodes_own_kubelet_certificate(minions, plane):
    with plane.session("kubelet", "worker01") as kubelet:
        kubelet.post(f"{plane.server}/api/v1/nodes", json={"metadata": {"name": "worker01"}})
    status = minions.execution("worker01").node_ready(plane.config("worker01"), "worker01")
    assert status["exists"] is True and status["ready"] is False  # no kubelet reports its status here
    assert status["reason"] == "NoReadyCondition"
