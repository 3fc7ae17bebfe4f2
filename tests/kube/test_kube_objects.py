"""The objects kubesalt puts into a cluster, against a real kube-apiserver 1.20: accepted by it (server-side dry run,
then for real), idempotent, and granting what they are for (checked with SubjectAccessReviews)."""

import threading
import time

import pytest
import yaml
from salt.exceptions import CommandExecutionError

from kubesalt import data, kubeobjects
from tests.kube.conftest import PKI, now
from tests.support.loader import ROOT, load

CONF = load("k8s_conf")
COREDNS = yaml.safe_load((ROOT / "formulas/k8s/addons/coredns.yaml").read_text())


def coredns_objects(config):
    return CONF.coredns_objects(config, COREDNS)


pytestmark = pytest.mark.kube
ADMIN = "kubernetes-admin"


def dry_run(plane, kube, manifest):
    """A server-side apply with dryRun=All: the API server validates and admits the object, and stores nothing."""
    manifest, _, path = kubeobjects.target(manifest)
    kind, namespace, name = kubeobjects.ref(manifest)
    url = plane.server + path
    with plane.session() as admin:
        answer = admin.patch(
            url,
            params={"fieldManager": "kubesalt", "force": "true", "dryRun": "All"},
            json=manifest,
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
    assert answer.status_code in (200, 201), f"{kind} {namespace}/{name}: {answer.text}"
    return answer.json()


def allowed(plane, user, groups, verb, resource, subresource="", group="", namespace="", name=""):
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": groups,
            "resourceAttributes": {
                "verb": verb,
                "group": group,
                "resource": resource,
                "subresource": subresource,
                "namespace": namespace,
                "name": name,
            },
        },
    }
    with plane.session() as admin:
        answer = admin.post(f"{plane.server}/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review)
    assert answer.status_code == 201, answer.text
    return answer.json()["status"].get("allowed", False)


def subject(plane, identity):
    """(CN, [O...]) of the certificate kubesalt issued for ``identity`` on master01."""
    with open(plane.files(identity)["cert"]) as fh:
        info = PKI.certificate_info(fh.read())
    return info["subject"]["cn"], info["subject"]["o"]


# cluster_objects ----------------------------------------------------------------------------------------------------
def test_the_built_in_kubelet_api_admin_role_exists_on_1_20_and_covers_nodes_proxy(kube, config):
    role = kube.get(config, "ClusterRole", "system:kubelet-api-admin")
    assert role is not None
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"nodes/proxy", "nodes/log", "nodes/stats", "nodes/metrics"} <= resources


def test_cluster_objects_are_accepted_applied_once_and_then_unchanged(kube, config, plane):
    objects = CONF.cluster_objects(config)
    assert [o["kind"] for o in objects] == ["ClusterRoleBinding"]
    for manifest in objects:
        dry_run(plane, kube, manifest)
    results = [kube.apply(config, m) for m in objects]
    assert all(r["action"] in ("created", None) for r in results)
    mark = plane.audit_mark()
    assert [kube.apply(config, m)["changed"] for m in objects] == [False]
    assert plane.writes(since=mark, user=ADMIN) == []


def test_the_apiserver_kubelet_client_certificate_may_use_the_kubelet_api_once_bound(kube, config, plane):
    user, groups = subject(plane, "apiserver-kubelet-client")
    assert groups == [data.APISERVER_KUBELET_CLIENT_GROUP]
    for manifest in CONF.cluster_objects(config):
        kube.apply(config, manifest)
    for verb, subresource in (("get", "proxy"), ("create", "proxy"), ("get", "log"), ("get", "stats")):
        assert allowed(plane, user, groups, verb, "nodes", subresource, name="worker01"), (verb, subresource)
    # The grant comes from the group in the certificate, not from the user name.
    assert not allowed(plane, user, [], "get", "nodes", "proxy", name="worker01")
    assert not allowed(plane, user, groups, "list", "secrets")


@pytest.mark.parametrize(
    "identity, verb, resource, subresource, group",
    [
        ("kube-proxy", "list", "endpoints", "", ""),  # system:node-proxier
        ("kube-scheduler", "create", "pods", "binding", ""),  # system:kube-scheduler
        ("kube-controller-manager", "create", "serviceaccounts", "token", ""),  # system:kube-controller-manager
        ("admin", "delete", "nodes", "", ""),  # system:masters
    ],
)
def test_every_other_kubesalt_identity_is_served_by_a_built_in_binding(
    plane, identity, verb, resource, subresource, group
):
    user, groups = subject(plane, identity)
    assert allowed(plane, user, groups, verb, resource, subresource, group, namespace="kube-system")


# coredns_objects ----------------------------------------------------------------------------------------------------
def test_coredns_objects_are_accepted_by_a_server_side_dry_run(kube, config, plane):
    for manifest in coredns_objects(config):
        answer = dry_run(plane, kube, manifest)
        assert answer["kind"] == manifest["kind"]


def test_coredns_objects_apply_and_a_second_apply_changes_nothing(kube, config, plane):
    objects = coredns_objects(config)
    assert [o["kind"] for o in objects] == [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
    ]
    for manifest in objects:
        assert kube.apply(config, manifest)["action"] in ("created", None)
    mark = plane.audit_mark()
    assert [kube.apply(config, m)["changed"] for m in objects] == [False] * 6
    assert plane.writes(since=mark, user=ADMIN) == []


def test_the_kube_dns_service_sits_at_the_cluster_dns_ip_and_maps_53_to_coredns(kube, config):
    for manifest in coredns_objects(config):
        kube.apply(config, manifest)
    service = kube.get(config, "Service", "kube-dns", "kube-system")
    assert service["spec"]["clusterIP"] == config["networks"]["cluster_dns_ip"] == "10.32.0.10"
    assert {(p["port"], p["protocol"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        (53, "UDP", "dns"),
        (53, "TCP", "dns-tcp"),
        (9153, "TCP", "metrics"),
    }
    pod = kube.get(config, "Deployment", "coredns", "kube-system")["spec"]["template"]["spec"]
    ports = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
    assert ports == {"dns": 1053, "dns-tcp": 1053, "metrics": 9153}
    assert ".:1053 {" in kube.get(config, "ConfigMap", "coredns", "kube-system")["data"]["Corefile"]


def test_the_coredns_pod_runs_as_non_root_without_capabilities_and_tolerates_the_master_taint(kube, config):
    deployment = next(o for o in coredns_objects(config) if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]  # the 1.20 profile's master taint
    assert pod["priorityClassName"] == "system-cluster-critical" and pod["dnsPolicy"] == "Default"
    assert container["image"] == config["addons"]["coredns"]["image"] == "k8s.gcr.io/coredns:1.7.0"
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8181, "scheme": "HTTP"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8080, "scheme": "HTTP"}


def test_coredns_may_list_and_watch_what_its_kubernetes_plugin_reads(kube, config, plane):
    for manifest in coredns_objects(config):
        kube.apply(config, manifest)
    sa = "system:serviceaccount:kube-system:coredns"
    groups = ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]
    for resource, group in (
        ("endpoints", ""),
        ("services", ""),
        ("pods", ""),
        ("namespaces", ""),
        ("endpointslices", "discovery.k8s.io"),
    ):
        for verb in ("list", "watch"):
            assert allowed(plane, sa, groups, verb, resource, group=group), (verb, resource)
    assert not allowed(plane, sa, groups, "list", "secrets")


def test_the_corefile_serves_the_cluster_domain_and_forwards_the_rest(kube, config):
    configmap = next(o for o in coredns_objects(dict(config, cluster_domain="k8s.example")) if o["kind"] == "ConfigMap")
    corefile = configmap["data"]["Corefile"]
    assert "kubernetes k8s.example in-addr.arpa ip6.arpa {" in corefile
    for line in ("forward . /etc/resolv.conf", "cache 30", "loop", "reload", "ready", "health {"):
        assert f"    {line}\n" in corefile


def test_coredns_objects_are_empty_when_the_addon_is_disabled(kube, config):
    disabled = dict(config, addons={"coredns": dict(config["addons"]["coredns"], enabled=False)})
    assert coredns_objects(disabled) == []


# deployment_available -----------------------------------------------------------------------------------------------
def deployment(name, namespace, replicas):
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "registry.invalid/none:1"}]},
            },
        },
    }


@pytest.fixture(scope="module")
def ns(kube, config):
    kube.apply(config, {"kind": "Namespace", "metadata": {"name": "kubesalt-rollout"}})
    return "kubesalt-rollout"


def test_deployment_available_reports_a_deployment_without_nodes_as_unavailable_within_its_timeout(
    kube, config, ns, name
):
    kube.apply(config, deployment(name, ns, replicas=2))
    start = time.monotonic()
    with pytest.raises(CommandExecutionError) as error:
        kube.deployment_available(config, ns, name, timeout=4, interval=0.5)
    assert 4 <= time.monotonic() - start < 8
    message = str(error.value)
    assert f"waiting for Deployment {ns}/{name} to be available: not done after 4 s" in message
    # The controller-manager's real status: both replicas exist, none is available.
    assert (
        "0 of 2 updated replicas available (Available: False, MinimumReplicasUnavailable: Deployment does not "
        "have minimum availability.)"
    ) in message
    live = kube.get(config, "Deployment", name, ns)
    assert kube.deployment_rollout(live)["available"] is False


def test_deployment_available_of_a_missing_deployment_says_it_does_not_exist(kube, config, ns, name):
    with pytest.raises(CommandExecutionError, match=f"Deployment {ns}/{name} does not exist"):
        kube.deployment_available(config, ns, name, timeout=1, interval=0.5)


def test_a_deployment_scaled_to_zero_is_available(kube, config, ns, name):
    kube.apply(config, deployment(name, ns, replicas=0))
    result = kube.deployment_available(config, ns, name, timeout=30, interval=0.5)
    assert result["available"] is True


def test_deployment_available_once_its_pod_is_ready(kube, config, plane, ns, name):
    """The whole path through the real controllers: the ReplicaSet's pod is bound to a node and reported Ready
    (by hand: there is no scheduler or kubelet here), and the Deployment becomes available."""
    node = f"fake-{name}"[:63]
    with plane.session() as admin:
        assert admin.post(f"{plane.server}/api/v1/nodes", json={"metadata": {"name": node}}).status_code == 201
        kube.apply(config, deployment(name, ns, replicas=1))
        pods = []
        for _ in range(60):
            pods = admin.get(
                f"{plane.server}/api/v1/namespaces/{ns}/pods", params={"labelSelector": f"app={name}"}
            ).json()["items"]
            if pods:
                break
            time.sleep(0.5)
        assert pods, "the ReplicaSet controller created no pod"
        pod = pods[0]["metadata"]["name"]
        waiter = {}
        thread = threading.Thread(
            target=lambda: waiter.update(result=kube.deployment_available(config, ns, name, timeout=60, interval=0.5))
        )
        thread.start()
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        answer = admin.post(f"{plane.server}/api/v1/namespaces/{ns}/pods/{pod}/binding", json=binding)
        assert answer.status_code == 201, answer.text
        stamp = now()
        status = {
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": t, "status": "True", "lastTransitionTime": stamp}
                    for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
                ],
            }
        }
        answer = admin.patch(
            f"{plane.server}/api/v1/namespaces/{ns}/pods/{pod}/status",
            json=status,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert answer.status_code == 200, answer.text
        thread.join(70)
    assert waiter["result"] == {"available": True, "message": f"Deployment {ns}/{name}: 1 of 1 replicas available"}
