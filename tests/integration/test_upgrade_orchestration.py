"""k8s.upgrade through a real salt-master and real minions (manage_services is false here: no systemd, no running
cluster; tests/kube runs the preflight and node steps against a real etcd + kube-apiserver, the lab runs it all):

- the orchestration renders on the master (the inventory asked of the masters with saltutil.cmd), syncs the new
  modules, and runs its phases in order; test=True changes no file on any node; a run on a converged cluster
  changes nothing;
- the preflight, called on the CA minion through the master, refuses a cluster it cannot reach and names why."""

import pytest

from tests.integration.conftest import NODES, snapshot
from tests.unit.test_upgrade import PHASES


@pytest.fixture(scope="module")
def converged(salt_run_cli):
    ret = salt_run_cli.run("state.orchestrate", "k8s.cluster")
    assert ret.returncode == 0, ret


def steps_of(ret):
    steps = next(iter(ret.data["data"].values()))  # the return is keyed by the master's id
    return [(s["__id__"], s) for s in sorted(steps.values(), key=lambda s: s["__run_num__"])]


def test_upgrade_test_mode_runs_every_phase_and_changes_nothing(salt_run_cli, converged, node_root):
    before = {m: snapshot(node_root(m)) for m in NODES}
    ret = salt_run_cli.run("state.orchestrate", "k8s.upgrade", "test=True")
    assert ret.returncode == 0, ret
    order = [sid for sid, _ in steps_of(ret)]
    batches = [
        f"{n} {what}"
        for n in ("master01", "worker01", "worker02")
        for what in (
            "marked, cordoned and drained for the upgrade",
            "runtime, kubelet and kube-proxy upgraded",
            "Ready and uncordoned",
        )
    ]
    assert order == PHASES + batches, [(sid, step["result"], step["comment"][-1500:]) for sid, step in steps_of(ret)][
        -2:
    ]
    assert all(step["result"] is not False for _, step in steps_of(ret)), ret.data
    assert {m: snapshot(node_root(m)) for m in NODES} == before


def test_upgrade_of_a_converged_cluster_changes_nothing(salt_run_cli, converged):
    ret = salt_run_cli.run("state.orchestrate", "k8s.upgrade")
    assert ret.returncode == 0, ret
    for sid, step in steps_of(ret):
        assert step["result"], (sid, step)
        if step["name"] and not sid.startswith("sync") and not sid.startswith("validate"):
            assert step["changes"] == {}, (sid, step["changes"])


def test_preflight_on_the_ca_minion_refuses_a_cluster_it_cannot_reach(salt_cli, converged):
    ret = salt_cli.run("k8s_upgrade.preflight", minion_tgt="master01")
    assert ret.returncode != 0
    text = str(ret.data)
    assert "the upgrade is refused (nothing was changed)" in text, text
    assert "the API server on master01 is not ready" in text, text
    assert "the Node objects cannot be read" in text, text


def test_preflight_runs_on_the_ca_minion_only(salt_cli, converged):
    ret = salt_cli.run("k8s_upgrade.preflight", minion_tgt="worker01")
    assert ret.returncode != 0
    assert "runs on the CA minion (master01)" in str(ret.data), ret.data
