"""The day-2 orchestrations (k8s.etcd.member, k8s.etcd.restore, k8s.node.remove) rendered by Salt's own Jinja + YAML
renderers with a master's options, as `salt-run state.orchestrate` renders them: their steps, order, targets and the
arguments handed to the nodes; a missing or malformed pillar argument fails the render, before any step runs. Also
the operation arguments' validation (k8s.operation), the drain plan and the backup timer's units."""

import pathlib
import subprocess

import pytest
import salt.config
import salt.exceptions
import salt.utils.templates
import salt.utils.yaml

from tests.support.fileserver import master_functions
from tests.support.loader import load

FORMULAS = pathlib.Path(__file__).resolve().parents[2] / "formulas"


def master_opts(tmp_path):
    path = tmp_path / "master"
    path.write_text(
        salt.utils.yaml.safe_dump(
            {"root_dir": str(tmp_path), "file_client": "local", "file_roots": {"base": [str(FORMULAS)]}}
        )
    )
    return salt.config.master_config(str(path))


def render(tmp_path, sls, pillar):
    """The orchestration ``sls`` (e.g. k8s/etcd/member.sls) as an ordered list of (state id, function, args)."""
    text = (FORMULAS / sls).read_text()
    opts = master_opts(tmp_path)
    result = salt.utils.templates.render_jinja_tmpl(
        text,
        {
            "opts": opts,
            "salt": {"pillar.get": lambda key, default=None: pillar.get(key, default), **master_functions(opts)},
            "pillar": pillar,
            "grains": {},
            "saltenv": "base",
            "sls": sls,
        },
    )
    steps = []
    for state_id, body in salt.utils.yaml.safe_load(result).items():
        ((function, args),) = body.items()
        steps.append((state_id, function, {k: v for item in args for k, v in item.items()}))
    return steps


SYNC_STEPS = 2  # orchestrate.jinja's sync(): the extensions' sync, then the validation


def test_node_remove_drains_removes_the_member_cleans_the_node_then_deletes_it(tmp_path):
    steps = render(tmp_path, "k8s/node/remove.sls", {"node": "worker02", "drain_timeout": 120})
    ids = [s[0] for s in steps]
    assert ids[:SYNC_STEPS] == [
        "sync kubesalt extensions",
        "validate configuration on every node",
    ]
    assert ids[SYNC_STEPS:] == [
        "worker02 drained and its etcd member removed",
        "worker02 components stopped and cleaned",
        "Node worker02 deleted",
        "API backends updated on every node",
    ]
    by_id = {s[0]: s[2] for s in steps}
    cluster = by_id["worker02 drained and its etcd member removed"]
    assert cluster["sls"] == ["k8s.node.remove.drain", "k8s.etcd.membership"] and cluster["failhard"] is True
    assert cluster["pillar"] == {"k8s_op": {"node": "worker02", "drain_timeout": 120}}
    node = by_id["worker02 components stopped and cleaned"]
    assert node["tgt"] == "worker02" and "failhard" not in node  # a node that is gone must not stop the removal
    # the Node object goes after the kubelet stopped, whether or not the node answered
    assert by_id["Node worker02 deleted"]["require"] == [{"salt": "worker02 drained and its etcd member removed"}]


@pytest.mark.parametrize(
    "pillar",
    [{}, {"node": "Worker_02"}, {"node": "a b"}, {"node": "worker02\n"}],
    ids=["missing", "upper", "space", "newline"],
)
def test_node_remove_without_a_valid_node_fails_before_any_step(tmp_path, pillar):
    with pytest.raises(salt.exceptions.SaltRenderError, match="orchestration pillar 'node'"):
        render(tmp_path, "k8s/node/remove.sls", pillar)


def test_etcd_restore_steps_in_order_each_failhard_with_the_snapshot(tmp_path):
    steps = render(tmp_path, "k8s/etcd/restore.sls", {"snapshot": "latest"})
    ids = [s[0] for s in steps][SYNC_STEPS:]
    assert ids == [
        "snapshot checked on the seed",
        "control plane and etcd stopped",
        "seed restored, other data directories moved aside",
        "restored members started",
        "other members join one at a time",
        "control plane started one master at a time",
        "restore markers cleared",
        "every node Ready",
    ]
    for index, (_state_id, function, args) in enumerate(steps[SYNC_STEPS:]):
        assert function == "salt.state" and args["failhard"] is True
        assert args["pillar"] == {"k8s_op": {"snapshot": "latest"}}
        assert args["require"] == [{"salt": ([s[0] for s in steps][SYNC_STEPS - 1 + index])}]
    batches = {s[0]: s[2].get("batch") for s in steps}
    assert batches["other members join one at a time"] == 1
    assert batches["control plane started one master at a time"] == 1
    assert batches["restored members started"] is None  # they need each other for quorum


def test_etcd_restore_needs_a_snapshot_and_checks_the_seed(tmp_path):
    with pytest.raises(salt.exceptions.SaltRenderError, match="orchestration pillar 'snapshot' is missing"):
        render(tmp_path, "k8s/etcd/restore.sls", {})
    with pytest.raises(salt.exceptions.SaltRenderError, match="orchestration pillar 'seed'"):
        render(tmp_path, "k8s/etcd/restore.sls", {"snapshot": "latest", "seed": "../x"})
    steps = render(tmp_path, "k8s/etcd/restore.sls", {"snapshot": "/b/s.db", "seed": "master02"})
    assert steps[SYNC_STEPS][2]["pillar"] == {"k8s_op": {"snapshot": "/b/s.db", "seed": "master02"}}


def test_etcd_member_converges_and_a_replacement_first_removes_the_dead_member(tmp_path):
    plain = [s[0] for s in render(tmp_path, "k8s/etcd/member.sls", {})][SYNC_STEPS:]
    assert plain == [
        "etcd certificates of every member",
        "etcd members join one at a time",
        "etcd members not in k8s:nodes removed",
        "removed etcd members retired",
    ]
    steps = render(tmp_path, "k8s/etcd/member.sls", {"replace": "master02"})
    by_id = {s[0]: s[2] for s in steps}
    assert [s[0] for s in steps][SYNC_STEPS : SYNC_STEPS + 3] == [
        "etcd certificates of every member",
        "dead etcd member master02 removed for its replacement",
        "old data of master02 moved aside",
    ]
    assert by_id["dead etcd member master02 removed for its replacement"]["pillar"] == {
        "k8s_op": {"replace": "master02"}
    }
    assert by_id["old data of master02 moved aside"]["pillar"] == {"k8s_op": {"node": "master02"}}
    join = by_id["etcd members join one at a time"]
    assert join["batch"] == 1 and join["require"] == [{"salt": "old data of master02 moved aside"}]


def test_operation_arguments_are_checked_and_named():
    k8s = load("k8s")
    assert k8s.operation({"node": "worker02"}) == {
        "node": "worker02",
        "replace": None,
        "seed": None,
        "snapshot": None,
        "drain_timeout": None,
        "nodes": None,
    }
    assert k8s.operation(None)["node"] is None
    with pytest.raises(salt.exceptions.CommandExecutionError) as bad:
        k8s.operation({"node": "Worker 2", "snapshot": "relative.db", "drain_timeout": -1, "nod": "x"})
    text = str(bad.value)
    for fragment in ("k8s_op:node: 'Worker 2'", "k8s_op:snapshot: 'relative.db'", "k8s_op:drain_timeout", "k8s_op:nod"):
        assert fragment in text, text


def test_drain_plan_evicts_controlled_pods_leaves_daemonsets_and_blocks_on_bare_pods():
    kube = load("k8s_kube")

    def pod(name, owner=None, phase="Running", mirror=False):
        meta = {"name": name, "namespace": "ns"}
        if owner:
            meta["ownerReferences"] = [{"kind": owner, "name": "x", "controller": True}]
        if mirror:
            meta["annotations"] = {"kubernetes.io/config.mirror": "abc"}
        return {"metadata": meta, "status": {"phase": phase}}

    plan = kube.drain_plan(
        [
            pod("web", "ReplicaSet"),
            pod("db", "StatefulSet"),
            pod("agent", "DaemonSet"),
            pod("static", mirror=True),
            pod("job", "Job", phase="Succeeded"),
            pod("bare"),
        ]
    )
    assert plan == {
        "evict": ["ns/web", "ns/db"],
        "skipped": ["ns/agent (DaemonSet)", "ns/static (mirror pod)", "ns/job (finished)"],
        "blocking": ["ns/bare"],
    }


def test_backup_timer_units_pass_systemd_analyze_and_carry_every_argument(make_settings, tmp_path):
    conf = load("k8s_conf")
    config = make_settings(
        {
            "nodes": {"m1": {"roles": ["master", "etcd"], "ip": "10.240.0.11"}},
            "etcd": {"backup": {"schedule": "*-*-* 00/6:00:00", "copy_to": "/mnt/backup/etcd", "keep": 3}},
        },
        minion_id="m1",
    )
    spec = conf.etcd_backup(config, "m1", "/usr/bin/salt-call")
    unit = conf.unit(spec)
    assert "Type=oneshot" in unit and "UMask=0077" in unit
    command = unit.split("ExecStart=", 1)[1].split("\n")[0]
    assert command.split() == [
        "/usr/bin/salt-call",
        "--local",
        "--retcode-passthrough",
        "k8s_etcd.backup",
        "directory=/var/backups/kubesalt/etcd",
        "keep=3",
        "endpoints=https://127.0.0.1:2379",
        "ca=/etc/kubernetes/pki/etcd-ca.crt",
        "cert=/etc/kubernetes/pki/etcd-healthcheck-client.crt",
        "key=/etc/kubernetes/pki/etcd-healthcheck-client.key",
        "copy_to=/mnt/backup/etcd",
    ]
    assert "OnCalendar=*-*-* 00/6:00:00\n" in spec["timer"] and "Persistent=true" in spec["timer"]
    for suffix, text in ((".service", unit), (".timer", spec["timer"])):
        (tmp_path / f"kubesalt-etcd-backup{suffix}").write_text(text)
    out = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "kubesalt-etcd-backup.timer")], capture_output=True, text=True
    )
    problems = [line for line in (out.stdout + out.stderr).splitlines() if "kubesalt-etcd-backup" in line]
    assert not problems, out.stdout + out.stderr


def test_a_schedule_that_is_no_calendar_expression_is_refused_by_the_pillar_check(make_settings):
    k8s = load("k8s")
    config = make_settings({"nodes": {"m1": {"roles": ["master", "etcd"], "ip": "10.240.0.11"}}})
    config["etcd"]["backup"]["schedule"] = "daily\nExecStartPre=/bin/sh"
    assert any("k8s:etcd:backup:schedule" in e for e in k8s.check(config)["errors"])
