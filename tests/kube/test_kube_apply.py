"""k8s_kube.apply against a real kube-apiserver 1.20: compare first, then server-side apply; the audit log of the
API server shows which calls wrote (tests/support/apiserver.py logs every write)."""

import base64

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support.loader import load

pytestmark = pytest.mark.kube
NS = "kubesalt-apply"
ADMIN = "kubernetes-admin"  # CN of the admin certificate


@pytest.fixture(scope="module")
def ns(kube, config):
    kube.apply(config, {"kind": "Namespace", "metadata": {"name": NS}})
    return NS


def configmap(name, **data):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": data or {"a": "1"},
    }


def deployment(name, replicas=1, cpu="100m"):
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.invalid/none:1",
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "resources": {"requests": {"cpu": cpu, "memory": "16Mi"}},
                            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
                        }
                    ]
                },
            },
        },
    }


def rv(kube, config, manifest):
    return kube.get(config, manifest)["metadata"]["resourceVersion"]


# compare, then apply ------------------------------------------------------------------------------------------------
def test_apply_creates_then_a_second_apply_sends_no_write(kube, config, plane, ns, name):
    manifest = configmap(name, a="1", b="two")
    first = kube.apply(config, manifest)
    assert first["changed"] is True and first["action"] == "created"
    assert first["object"] == f"ConfigMap {ns}/{name}"
    mark, version = plane.audit_mark(), rv(kube, config, manifest)
    second = kube.apply(config, manifest)
    assert second == {
        "changed": False,
        "action": None,
        "object": f"ConfigMap {ns}/{name}",
        "diff": {},
        "resource_version": version,
    }
    assert plane.writes(resource="configmaps", name=name, since=mark, user=ADMIN) == []
    assert rv(kube, config, manifest) == version


def test_the_write_is_a_server_side_apply_by_field_manager_kubesalt(kube, config, plane, ns, name):
    mark = plane.audit_mark()
    kube.apply(config, configmap(name))
    writes = plane.writes(resource="configmaps", name=name, since=mark, user=ADMIN)
    assert [(w["verb"], w["user"]) for w in writes] == [("patch", "kubernetes-admin")]
    assert "fieldManager=kubesalt" in writes[0]["requestURI"] and "force=true" in writes[0]["requestURI"]
    managers = {m["manager"]: m["operation"] for m in kube.get(config, configmap(name))["metadata"]["managedFields"]}
    assert managers == {"kubesalt": "Apply"}


def test_apply_with_test_true_reports_a_creation_and_writes_nothing(kube, config, plane, ns, name):
    mark = plane.audit_mark()
    result = kube.apply(config, configmap(name), test=True)
    assert result["changed"] is True and result["action"] == "created"
    assert kube.get(config, configmap(name)) is None
    assert plane.writes(since=mark, user=ADMIN) == []


def test_apply_with_test_true_reports_the_difference_and_writes_nothing(kube, config, plane, ns, name):
    kube.apply(config, deployment(name, replicas=1))
    mark = plane.audit_mark()
    result = kube.apply(config, deployment(name, replicas=3), test=True)
    assert result["changed"] is True and result["action"] == "updated"
    assert result["diff"] == {"spec.replicas": {"old": 1, "new": 3}}
    assert kube.get(config, deployment(name))["spec"]["replicas"] == 1
    assert plane.writes(resource="deployments", since=mark, user=ADMIN) == []


def test_apply_updates_a_changed_field_and_keeps_fields_set_by_others(kube, config, plane, ns, name):
    kube.apply(config, deployment(name, replicas=1))
    with plane.session() as admin:  # another manager adds an annotation
        answer = admin.patch(
            f"{plane.server}/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            json={"metadata": {"annotations": {"example.org/owner": "team-a"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert answer.status_code == 200, answer.text
    changed = deployment(name, replicas=2)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.invalid/none:2"
    result = kube.apply(config, changed)
    assert result["changed"] is True and result["action"] == "updated"
    assert result["diff"] == {
        "spec.replicas": {"old": 1, "new": 2},
        "spec.template.spec.containers[0].image": {"old": "registry.invalid/none:1", "new": "registry.invalid/none:2"},
    }
    live = kube.get(config, changed)
    assert live["spec"]["replicas"] == 2
    assert live["metadata"]["annotations"]["example.org/owner"] == "team-a"
    assert kube.apply(config, changed)["changed"] is False


def test_a_full_deployment_with_server_defaults_is_idempotent(kube, config, plane, ns, name):
    kube.apply(config, deployment(name))
    live = kube.get(config, deployment(name))
    assert live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"]  # defaults were added
    mark = plane.audit_mark()
    assert kube.apply(config, deployment(name))["changed"] is False
    assert plane.writes(resource="deployments", name=name, since=mark, user=ADMIN) == []


def test_a_value_the_server_rewrites_costs_an_apply_that_is_reported_as_no_change(kube, config, plane, ns, name):
    kube.apply(config, deployment(name, cpu="0.1"))
    live = kube.get(config, deployment(name))
    assert live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "100m"
    mark = plane.audit_mark()
    result = kube.apply(config, deployment(name, cpu="0.1"))
    assert result["changed"] is False and result["action"] is None
    assert "spec.template.spec.containers[0].resources.requests.cpu" in result["note"]
    assert [w["verb"] for w in plane.writes(resource="deployments", name=name, since=mark, user=ADMIN)] == ["patch"]
    assert kube.get(config, deployment(name))["metadata"]["generation"] == live["metadata"]["generation"]


def test_a_secret_from_string_data_is_idempotent_and_its_values_are_not_shown(kube, config, ns, name):
    secret = {"kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": {"token": "s3cr3t"}}
    assert kube.apply(config, secret)["action"] == "created"
    assert base64.b64decode(kube.get(config, secret)["data"]["token"]) == b"s3cr3t"
    assert kube.apply(config, secret)["changed"] is False
    result = kube.apply(config, dict(secret, stringData={"token": "other"}), test=True)
    assert result["diff"] == {"data.token": {"old": "(hidden)", "new": "(hidden)"}}


def test_get_returns_none_for_a_missing_object_and_lists_without_a_name(kube, config, ns, name):
    assert kube.get(config, "ConfigMap", name, ns) is None
    kube.apply(config, configmap(name))
    assert name in [item["metadata"]["name"] for item in kube.get(config, "ConfigMap", namespace=ns)]
    assert kube.get(config, "Namespace", "kube-system")["metadata"]["name"] == "kube-system"


# refusals -----------------------------------------------------------------------------------------------------------
def test_an_unknown_kind_is_refused_naming_the_known_ones(kube, config, plane):
    mark = plane.audit_mark()
    with pytest.raises(SaltInvocationError) as error:
        kube.apply(config, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "x"}})
    assert "unknown kind 'Ingress'" in str(error.value) and "Deployment" in str(error.value)
    assert plane.writes(since=mark, user=ADMIN) == []


@pytest.mark.parametrize(
    "manifest, message",
    [
        ({"kind": "Deployment", "apiVersion": "v1", "metadata": {"name": "x"}}, "apiVersion 'v1' is not in the kind's"),
        ({"kind": "ClusterRole", "metadata": {"name": "x", "namespace": "a"}}, "is cluster-scoped"),
        ({"kind": "ConfigMap", "metadata": {}}, "has no metadata.name"),
        (["kind", "ConfigMap"], "expected a mapping"),
    ],
)
def test_a_malformed_manifest_is_refused(kube, config, manifest, message):
    with pytest.raises(SaltInvocationError, match=message):
        kube.apply(config, manifest)


def test_an_object_in_a_missing_namespace_fails_naming_the_object_and_the_answer(kube, config):
    with pytest.raises(CommandExecutionError) as error:
        kube.apply(config, {"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "no-such-ns"}})
    message = str(error.value)
    assert (
        "ConfigMap no-such-ns/x" in message and "HTTP 404" in message and 'namespaces "no-such-ns" not found' in message
    )


def test_an_invalid_object_fails_with_the_api_servers_reason(kube, config, ns, name):
    broken = deployment(name)
    broken["spec"]["selector"] = {"matchLabels": {"app": "something-else"}}
    with pytest.raises(CommandExecutionError) as error:
        kube.apply(config, broken)
    message = str(error.value)
    assert f"Deployment {ns}/{name}" in message and "HTTP 422" in message and "selector" in message


# the compare, without the API server --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pure():
    return load("k8s_kube")


@pytest.mark.parametrize(
    "desired, live, diff",
    [
        ({"a": 1}, {"a": 1, "b": 2}, {}),
        ({"a": {"b": [1, {"c": 2}]}}, {"a": {"b": [1, {"c": 2, "d": 3}], "e": 4}}, {}),
        ({"a": 2}, {"a": 1}, {"a": {"old": 1, "new": 2}}),
        ({"a": [1, 2]}, {"a": [1, 2, 3]}, {"a": {"old": [1, 2, 3], "new": [1, 2]}}),
        ({"a": "53"}, {"a": 53}, {"a": {"old": 53, "new": "53"}}),
        ({"a": True}, {"a": 1}, {"a": {"old": 1, "new": True}}),
        ({"a": {}, "b": [], "c": None}, {}, {}),
        ({"a": ""}, {}, {"a": {"old": None, "new": ""}}),
        (
            {"metadata": {"labels": {"k8s-app": "x", "node-role.kubernetes.io/master": ""}}},
            {"metadata": {"labels": {}}},
            {
                "metadata.labels.k8s-app": {"old": None, "new": "x"},
                'metadata.labels["node-role.kubernetes.io/master"]': {"old": None, "new": ""},
            },
        ),
    ],
)
def test_differences_is_empty_exactly_when_desired_is_a_recursive_subset(pure, desired, live, diff):
    assert pure.differences(desired, live) == diff
