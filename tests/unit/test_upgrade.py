"""k8s.upgrade: the version-skew preflight (k8s_upgrade.skew_problems / health_problems, a table of what the policy
forbids, each refusal naming the node and the versions), the plan, a node's progress kept in its annotations, and
the orchestration formulas/k8s/upgrade.sls rendered by Salt's own Jinja + YAML renderers with the master's
options: its phases in order, the batches, the arguments handed to the nodes."""

import pytest
from salt.exceptions import CommandExecutionError

from tests.support.fileserver import master_functions
from tests.support.loader import load
from tests.unit.test_day2_render import FORMULAS, master_opts

UP = load("k8s_upgrade")
TARGET = {"kubernetes": "1.37.1", "etcd": "3.6.14"}


def observed(apis=None, kubelets=None, etcd=None):
    return {
        "apiservers": apis if apis is not None else {"m1": "v1.36.4"},
        "kubelets": kubelets if kubelets is not None else {"w1": "v1.36.4"},
        "etcd": etcd if etcd is not None else {"m1": "3.6.5"},
    }


# (case id, observed, the fragments the one refusal must hold)
REFUSED = [
    ("kubernetes skips a minor", observed(apis={"m1": "v1.35.2"}), ["skips a minor", "on m1", "1.35.2", "1.36 first"]),
    ("kubernetes downgrade", observed(apis={"m1": "v1.37.2"}, kubelets={}), ["older than the API server on m1"]),
    (
        "kubelet newer than the API server",
        observed(apis={"m1": "v1.36.4"}, kubelets={"w1": "v1.37.0"}),
        ["kubelet on w1 (1.37.0) is newer than the API server on m1 (1.36.4)"],
    ),
    (
        "kubelet newer than the target",
        observed(apis={"m1": "v1.37.1"}, kubelets={"w1": "v1.37.1", "w2": "v1.37.2"}),
        ["kubelet on w2 (1.37.2) is newer than the API server on m1"],
    ),
    (
        "kubelet too old for the target",
        observed(apis={"m1": "v1.36.4"}, kubelets={"w1": "v1.33.9"}),
        ["kubelet on w1 (1.33.9) is more than 3 minors older than Kubernetes 1.37.1"],
    ),
    ("etcd downgrade", observed(etcd={"m1": "3.6.15"}), ["etcd 3.6.14", "older than member m1 (3.6.15)"]),
    ("etcd skips a minor", observed(etcd={"m2": "3.4.23"}), ["skips a minor: member m2 runs 3.4.23", "3.5 first"]),
    ("etcd major", observed(etcd={"m1": "2.3.8"}), ["another major version than member m1"]),
    (
        "api servers apart",
        observed(apis={"m1": "v1.36.4", "m2": "v1.34.1"}),
        ["skips a minor: the API server on m2", "more than one minor apart: m2 runs 1.34.1, m1 1.36.4"],
    ),
]


@pytest.mark.parametrize("case, seen, fragments", REFUSED, ids=[c[0] for c in REFUSED])
def test_the_version_skew_policy_refuses_and_names_node_and_versions(case, seen, fragments):
    problems = UP.skew_problems(TARGET, seen)
    text = "\n".join(problems)
    assert problems, case
    for fragment in fragments:
        assert fragment in text, text


@pytest.mark.parametrize(
    "seen",
    [
        observed(),  # one minor up
        observed(apis={"m1": "v1.37.0"}, kubelets={"w1": "v1.36.4"}),  # a patch release
        observed(apis={"m1": "v1.36.4", "m2": "v1.37.1"}, kubelets={"w1": "v1.34.0"}),  # interrupted, kubelet -3
        observed(etcd={"m1": "3.5.16", "m2": "3.6.14"}),  # etcd one minor up, partly done
        observed(apis={"m1": ""}, kubelets={"w1": ""}, etcd={"m1": ""}),  # unreadable: a health problem, not skew
    ],
    ids=["minor", "patch", "interrupted", "etcd-partly", "unreadable"],
)
def test_the_version_skew_policy_allows_one_minor_at_a_time(seen):
    assert UP.skew_problems(TARGET, seen) == []


def test_kubelet_skew_is_two_minors_before_1_28_and_three_after():
    assert UP.kubelet_skew((1, 27)) == 2 and UP.kubelet_skew((1, 28)) == 3
    assert UP.skew_problems({"kubernetes": "1.22.0"}, observed(apis={"m1": "v1.21.0"}, kubelets={"w1": "v1.19.4"}))
    assert not UP.skew_problems({"kubernetes": "1.22.0"}, observed(apis={"m1": "v1.21.0"}, kubelets={"w1": "v1.20.4"}))


def test_versions_are_read_from_what_the_components_report():
    assert UP.parse_version("v1.20.2") == (1, 20, 2)
    assert UP.parse_version("containerd://1.6.20") == (1, 6, 20)
    assert UP.parse_version("v1.20.2-kubesalt-lab+abc") == (1, 20, 2)
    assert UP.parse_version("") is None and UP.parse_version(None) is None


def node(ready=True, cordoned_by=None, upgraded_to="", reason="KubeletReady"):
    return {
        "ready": ready,
        "reason": reason,
        "message": "m",
        "unschedulable": cordoned_by is not None,
        "kubelet": "v1.20.2",
        "runtime": "containerd://1.7.24",
        "upgrade_cordoned": cordoned_by is not None,
        "cordoned_by_upgrade": cordoned_by == "true",
        "upgraded_to": upgraded_to,
    }


INVENTORY = {"masters": ["m1"], "nodes": ["m1", "w1", "w2"], "etcd_members": ["m1", "m2", "m3"]}


def healthy():
    return {
        "apiservers": {"m1": "v1.20.2"},
        "readyz": {"m1": {"ready": True}},
        "nodes": {"m1": node(), "w1": node(), "w2": node()},
        "etcd": {"m1": "3.4.23", "m2": "3.4.23", "m3": "3.5.16"},
        "etcd_health": {
            "members": {m: {"healthy": True, "learner": False} for m in ("m1", "m2", "m3")},
        },
    }


def test_a_healthy_cluster_has_no_health_problem():
    assert UP.health_problems(healthy(), INVENTORY) == []


def test_an_unhealthy_cluster_is_refused_naming_each_member_server_and_node():
    seen = healthy()
    seen["etcd_health"]["members"]["m2"] = {"healthy": False, "learner": False, "error": "connection refused"}
    del seen["etcd_health"]["members"]["m3"]
    seen["readyz"]["m1"] = {"ready": False, "error": "HTTP 500, failed checks: etcd"}
    seen["nodes"]["w1"] = node(ready=False, reason="KubeletNotReady")
    del seen["nodes"]["w2"]
    text = "\n".join(UP.health_problems(seen, INVENTORY))
    for fragment in (
        "etcd member m2 is not healthy: connection refused",
        "etcd member m3 is not in the member list",
        "the API server on m1 is not ready: HTTP 500, failed checks: etcd",
        "node w1 is NotReady: KubeletNotReady",
        "node w2 is not registered",
    ):
        assert fragment in text, text


def test_a_node_an_interrupted_upgrade_left_cordoned_may_be_notready():
    seen = healthy()
    seen["nodes"]["w1"] = node(ready=False, cordoned_by="true", reason="KubeletNotReady")
    assert UP.health_problems(seen, INVENTORY) == []


def test_the_plan_lists_what_differs_and_skips_nodes_already_upgraded():
    target = UP.targets({"versions": {"kubernetes": "1.20.2", "etcd": "3.5.16", "containerd": "1.7.24"}})
    assert target["fingerprint"] == "containerd=1.7.24,kubernetes=1.20.2"
    seen = healthy()
    seen["nodes"]["m1"] = node(upgraded_to=target["fingerprint"])
    seen["nodes"]["w1"] = node(upgraded_to=target["fingerprint"], cordoned_by="true")
    plan = UP.plan(target, seen, INVENTORY)
    assert plan["etcd"] == {"m1": "3.4.23 -> 3.5.16", "m2": "3.4.23 -> 3.5.16"}
    assert plan["control_plane"] == {}
    assert plan["nodes"] == {
        "w1": "cordoned by an interrupted upgrade: finish it",
        "w2": "never upgraded by k8s.upgrade -> containerd=1.7.24,kubernetes=1.20.2",
    }
    assert plan["skipped"] == ["m1"] and plan["snapshot"] is True
    text = UP.describe(plan)
    assert "etcd member m2: 3.4.23 -> 3.5.16" in text and "nodes already at" in text


def test_nothing_to_do_takes_no_snapshot():
    target = UP.targets({"versions": {"kubernetes": "1.20.2", "etcd": "3.4.23"}})
    seen = healthy()
    seen["etcd"]["m3"] = "3.4.23"
    seen["nodes"] = {n: node(upgraded_to=target["fingerprint"]) for n in INVENTORY["nodes"]}
    plan = UP.plan(target, seen, INVENTORY)
    assert plan["snapshot"] is False and plan["skipped"] == INVENTORY["nodes"]


def test_preflight_refuses_with_every_problem_and_changes_nothing():
    config = {
        "versions": {"kubernetes": "1.22.0", "etcd": "3.6.0"},
        "cluster": {"is_ca": True, "ca_minion": "m1", **INVENTORY},
    }
    seen = healthy()
    with pytest.raises(CommandExecutionError) as refused:
        UP.preflight(config, observed=seen)
    text = str(refused.value)
    assert "nothing was changed" in text
    assert "Kubernetes 1.22.0 (k8s:versions:kubernetes) skips a minor: the API server on m1 runs 1.20.2" in text
    assert "etcd 3.6.0 (k8s:versions:etcd) skips a minor: member m1 runs 3.4.23" in text


def test_preflight_runs_on_the_ca_minion_only():
    config = {"versions": {}, "cluster": {"is_ca": False, "ca_minion": "m1", **INVENTORY}}
    with pytest.raises(Exception, match="runs on the CA minion"):
        UP.preflight(config, observed=healthy())


# --------------------------------------------------------------------------------------------------------------------
# The orchestration
# --------------------------------------------------------------------------------------------------------------------
# the steps before the node batches
PHASES = [
    "sync kubesalt extensions",
    "validate configuration on every node",
    "upgrade preflight and plan",
    "etcd snapshot before the upgrade",
    "etcd members in parallel",
    "etcd members restarted one at a time",
    "control plane one master at a time",
]
NODES = {
    "master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"},
    "worker01": {"roles": ["worker"], "ip": "10.240.0.21"},
    "worker02": {"roles": ["worker"], "ip": "10.240.0.22"},
    "worker03": {"roles": ["worker"], "ip": "10.240.0.23"},
}


def render(tmp_path, pillar, answers):
    """formulas/k8s/upgrade.sls as (state id, function, args), the masters' pillar answers standing in for
    saltutil.cmd (the salt-master asking the masters)."""
    import salt.utils.templates
    import salt.utils.yaml

    asked = []

    def cmd(tgt, fun, arg=(), tgt_type="glob", **kwargs):
        asked.append((tgt, fun, list(arg), tgt_type))
        if fun == "test.ping":  # the minions with the role:master grain
            return {m: {"ret": True, "retcode": 0} for m in answers.get("masters", [])}
        # Salt masks pillar values in pillar.get's output; the keys stay
        masked = {k: {"roles": ["**********"], "ip": "**********"} for k in answers.get(arg[0]) or {}}
        return {"master01": {"ret": masked, "retcode": 0}, "master02": {"ret": "", "retcode": 0}}

    text = (FORMULAS / "k8s/upgrade.sls").read_text()
    opts = master_opts(tmp_path)
    result = salt.utils.templates.render_jinja_tmpl(
        text,
        {
            "opts": opts,
            "salt": {
                "pillar.get": lambda key, default=None: pillar.get(key, default),
                "saltutil.cmd": cmd,
                **master_functions(opts),
            },
            "pillar": pillar,
            "grains": {},
            "saltenv": "base",
            "sls": "k8s.upgrade",
        },
    )
    steps = []
    for state_id, body in salt.utils.yaml.safe_load(result).items():
        ((function, args),) = body.items()
        steps.append((state_id, function, {k: v for item in args for k, v in item.items()}))
    return steps, asked


def test_orchestration_phases_in_order_nodes_in_batches_masters_first(tmp_path):
    pillar = {"drain_timeout": 600, "k8s:upgrade:node_batch": 2}
    steps, asked = render(tmp_path, pillar, {"k8s:nodes": NODES, "masters": ["master01"]})
    # only the inventory's keys are asked of the masters: no value of the k8s pillar reaches the job cache
    assert [(a[1], a[2]) for a in asked] == [("pillar.get", ["k8s:nodes"]), ("test.ping", [])]
    ids = [s[0] for s in steps]
    assert ids[: len(PHASES)] == PHASES
    assert ids[len(PHASES) :] == [
        "master01, worker01 marked, cordoned and drained for the upgrade",
        "master01, worker01 runtime, kubelet and kube-proxy upgraded",
        "master01, worker01 Ready and uncordoned",
        "worker02, worker03 marked, cordoned and drained for the upgrade",
        "worker02, worker03 runtime, kubelet and kube-proxy upgraded",
        "worker02, worker03 Ready and uncordoned",
    ]
    by_id = {s[0]: s[2] for s in steps}
    assert all(args.get("failhard") for sid, args in by_id.items() if not sid.startswith("sync"))
    # each step after the previous one
    for before, after in zip(ids[4:-1], ids[5:], strict=True):
        assert {"salt": before} in by_id[after]["require"], (before, after)
    assert by_id["etcd members restarted one at a time"]["batch"] == 1
    assert by_id["control plane one master at a time"]["batch"] == 1
    nodes = by_id["worker02, worker03 runtime, kubelet and kube-proxy upgraded"]
    assert nodes["tgt"] == "worker02,worker03" and nodes["tgt_type"] == "list" and nodes["sls"] == "k8s.upgrade.node"
    op = {"k8s_op": {"nodes": ["worker02", "worker03"], "drain_timeout": 600}}
    assert nodes["pillar"] == op
    assert by_id["worker02, worker03 marked, cordoned and drained for the upgrade"]["pillar"] == op


def test_orchestration_batch_defaults_to_defaults_yaml(tmp_path):
    steps, _ = render(tmp_path, {}, {"k8s:nodes": NODES, "masters": ["master01"]})
    drains = [s[0] for s in steps if s[0].endswith("for the upgrade")]
    assert drains == [f"{n} marked, cordoned and drained for the upgrade" for n in NODES]
    assert "drain_timeout" not in {s[0]: s[2] for s in steps}[drains[0]]["pillar"]["k8s_op"]


def test_orchestration_without_an_inventory_fails_before_any_step(tmp_path):
    with pytest.raises(Exception, match="no master answered with the k8s:nodes pillar"):
        render(tmp_path, {}, {})
