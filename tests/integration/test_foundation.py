"""Foundation through a real salt-master and real salt-minions: module sync, validation, role targeting, the guard
that keeps an invalid pillar from changing anything, idempotency and test=True."""

import pathlib
import re

import psutil
import pytest

from tests.integration.conftest import NODES, ORCHESTRATION_STEPS, snapshot
from tests.support.master_conf import WORKER_POOLS
from tests.unit.test_validate import TOO_NEW

pytestmark = pytest.mark.integration


def test_every_minion_answers_with_its_role_grain(salt_cli):
    ret = salt_cli.run("grains.get", "role", minion_tgt="*")
    assert ret.returncode == 0, ret
    assert ret.data == {mid: grains for mid, (grains, _, _) in NODES.items()}


def test_master_runs_the_readme_worker_pools(salt_master):
    """The README's master config gives `publish` a pool of its own (peer publishes otherwise stall 30 s at random):
    the running salt-master must have started exactly those MWorker processes, one set per pool.

    Salt's process manager logs "Started 'MWorker-<pool>-<index>' with pid <pid>" (debug, the factory's log file
    level); each such worker must still be a live child of this master. Process titles are not used: setproctitle
    truncates them to the space of the master's argv and environment, which differs from shell to shell."""
    log_file = pathlib.Path(salt_master.config["log_file"])
    if not log_file.is_absolute():
        log_file = pathlib.Path(salt_master.config["root_dir"]) / log_file
    started = {}  # the latest pid per worker name (a restarted worker logs again)
    for name, pid in re.findall(r"Started '(MWorker-[\w-]+)' with pid (\d+)", log_file.read_text()):
        started[name] = int(pid)
    alive = {proc.pid for proc in psutil.Process(salt_master.pid).children(recursive=True)}
    for pool, conf in WORKER_POOLS.items():
        names = sorted(n for n in started if re.fullmatch(rf"MWorker-{re.escape(pool)}-\d+", n))
        assert names == [f"MWorker-{pool}-{i}" for i in range(conf["worker_count"])], (pool, sorted(started))
        assert all(started[n] in alive for n in names), (pool, {n: started[n] for n in names}, sorted(alive))
    assert len(started) == sum(conf["worker_count"] for conf in WORKER_POOLS.values()), sorted(started)


def test_synced_modules_are_loaded_on_every_minion(salt_cli):
    ret = salt_cli.run("sys.list_modules", "k8s*", minion_tgt="*")
    for mid in NODES:
        assert "k8s" in ret.data[mid], ret


def test_synced_shared_core_is_what_the_modules_import(salt_cli):
    """The sync route: salt://_utils/kubesalt/ lands in each minion's extmods/utils, and the execution modules import
    it from there (the answer below is computed by kubesalt.topology on the minion)."""
    ret = salt_cli.run("saltutil.sync_utils", minion_tgt="worker01")
    assert ret.returncode == 0, ret
    where = salt_cli.run(
        "cmd.run", "ls -1 {{ opts.extension_modules }}/utils/kubesalt", "template=jinja", minion_tgt="worker01"
    )
    assert {"__init__.py", "data.py", "topology.py"} <= set(where.data.split()), where
    cluster = salt_cli.run("k8s.config", minion_tgt="worker01").data["cluster"]
    assert cluster["roles"] == ["worker"] and cluster["is_node"] and not cluster["is_master"]
    assert cluster["api_url"] == "https://127.0.0.1:6444"  # its node-local API balancer
    assert cluster["apiserver_url"] == "https://10.240.0.11:6443"  # the first master, for clients off the nodes
    assert cluster["etcd_client_urls"] == ["https://10.240.0.11:2379"]


def test_valid_inventory_validates_on_every_minion(salt_cli):
    ret = salt_cli.run("k8s.validate", minion_tgt="*")
    assert ret.returncode == 0, ret
    for mid in NODES:
        assert ret.data[mid]["valid"] is True, ret.data[mid]
        assert ret.data[mid]["errors"] == []


def test_config_is_resolved_from_master_side_pillar_not_grains(salt_cli):
    ret = salt_cli.run("k8s.config", minion_tgt="worker01")
    cluster = ret.data["cluster"]
    assert cluster["masters"] == ["master01"]
    assert cluster["workers"] == ["worker01", "worker02"]
    assert cluster["etcd_members"] == ["master01"]
    assert cluster["ca_minion"] == "master01"
    assert cluster["node"]["roles"] == ["worker"]
    assert cluster["pod_cidrs"]["worker01"] == "10.200.21.0/24"


def test_highstate_targets_by_role_grain(salt_cli):
    ret = salt_cli.run("state.show_top", minion_tgt="*")
    assert ret.data["master01"]["base"] == ["k8s.master"]
    assert ret.data["worker01"]["base"] == ["k8s.worker"]


def test_common_layout_applies_then_reapplies_with_zero_changes(apply_sls, node_root):
    first = apply_sls("worker02", "k8s.common")
    assert first.ok, first
    assert (node_root("worker02") / "etc/kubernetes/pki").is_dir()
    second = apply_sls("worker02", "k8s.common")
    assert second.ok, second
    assert second.changed == {}, second


def test_test_mode_reports_pending_changes_and_writes_nothing(apply_sls, tmp_path):
    fresh = tmp_path / "fresh-worker01"  # a node root no other test has written to, whatever the test order
    fresh.mkdir()
    run = apply_sls("worker01", "k8s.worker", test=True, pillar={"k8s": {"fs_root": str(fresh)}})
    assert run.ok, run
    assert run.pending, "test=True on a fresh node must report the pending changes"
    assert list(fresh.iterdir()) == []


@pytest.fixture
def broken_pillar(pillar_override):
    return pillar_override


BROKEN = [
    ("k8s:\n  networks:\n    pod_cidr: 10.32.0.0/16\n", "k8s:networks:pod_cidr: 10.32.0.0/16 overlaps"),
    ("k8s:\n  networks:\n    cluster_dns_ip: 10.99.0.10\n", "k8s:networks:cluster_dns_ip: 10.99.0.10 is outside"),
    ("k8s:\n  nodes:\n    worker02:\n      roles: [wrker]\n", "k8s:nodes:worker02:roles: 'wrker' is not a known role"),
    ("k8s:\n  versions:\n    kubernetes: 1.34\n", "k8s:versions:kubernetes: '1.34' is not a MAJOR.MINOR.PATCH"),
    (
        f"k8s:\n  versions:\n    kubernetes: {TOO_NEW}\n",
        f"k8s:versions:kubernetes: {TOO_NEW} is newer than every Kubernetes release this kubesalt knows",
    ),
    ("k8s:\n  pki:\n    ca_days: 100\n", "k8s:pki:ca_days: a CA lifetime of 100 days is shorter"),
    ("k8s:\n  versions:\n    etcd: 3.4.99\n", "k8s:artifacts:pins:etcd:3.4.99:amd64: no pinned"),
    (
        "k8s:\n  apiserver:\n    extra_flag: [--v=2]\n",
        "k8s:apiserver:extra_flag: unknown key; did you mean 'extra_flags'?",
    ),
    (
        'k8s:\n  nodes:\n    worker02:\n      ip: "10.240.0.22\\nUser=root"\n',
        "k8s:nodes:worker02:ip: '10.240.0.22\\nUser=root'",
    ),
]


@pytest.mark.parametrize("override,message", BROKEN, ids=[m.split(":")[1] + ":" + m.split(":")[2] for _, m in BROKEN])
def test_broken_pillar_is_refused_by_validate_naming_the_key(salt_cli, broken_pillar, override, message):
    broken_pillar(override)
    ret = salt_cli.run("k8s.validate", minion_tgt="worker01")
    assert ret.returncode != 0
    assert ret.data["valid"] is False
    assert any(message in e for e in ret.data["errors"]), ret.data["errors"]


def test_broken_pillar_stops_every_state_before_any_change(apply_sls, broken_pillar, node_root):
    before = snapshot(node_root("worker02"))
    broken_pillar("k8s:\n  networks:\n    service_cidr: 10.200.0.0/24\n")
    run = apply_sls("worker02", "k8s.worker")
    assert not run.states, run
    text = "\n".join(run.errors)
    assert "invalid configuration (nothing was changed)" in text
    assert "k8s:networks:pod_cidr: 10.200.0.0/16 overlaps k8s:networks:service_cidr" in text
    assert snapshot(node_root("worker02")) == before


def test_orchestration_runs_in_order_and_a_second_run_changes_nothing(salt_run_cli, node_root):
    first = salt_run_cli.run("state.orchestrate", "k8s.cluster")
    assert first.returncode == 0, first
    steps = next(iter(first.data["data"].values()))  # the return is keyed by the master's id
    assert all(s["result"] for s in steps.values()), steps
    order = [s["__id__"] for s in sorted(steps.values(), key=lambda s: s["__run_num__"])]
    assert order == ORCHESTRATION_STEPS, order
    for minion in ("master01", "worker01", "worker02"):
        assert (node_root(minion) / "etc/kubernetes/kubelet.yaml").is_file(), minion
    assert (node_root("master01") / "etc/systemd/system/kube-apiserver.service").is_file()
    assert not (node_root("worker01") / "etc/systemd/system/kube-apiserver.service").exists()
    # etcd reached the member through the real download path (local mirror, pinned digest, cache, extraction).
    installed = node_root("master01") / "usr/local/bin/etcd"
    assert installed.read_bytes() == pathlib.Path("/usr/bin/etcd").read_bytes()
    assert not (node_root("worker01") / "usr/local/bin/etcd").exists()
    second = salt_run_cli.run("state.orchestrate", "k8s.cluster")
    assert second.returncode == 0, second
    for sid, step in next(iter(second.data["data"].values())).items():
        assert step["result"], (sid, step)
        if sid.endswith("_|-state"):  # salt.state steps: the minions' state changes
            assert step["changes"] == {}, (sid, step["changes"])


def test_sync_is_skipped_where_the_fingerprints_match_and_repairs_a_node_where_they_do_not(salt_cli, salt_run_cli):
    """The orchestration's first step, k8s.sync: with the master's fingerprint of kubesalt's extension modules (as the
    orchestration renders it on the master), a node whose synced copies match renders no sync at all; a node with a
    synced file missing and a stray one renders the four syncs, and applying them puts back the file and removes the
    stray, after which it matches again."""
    shown = salt_run_cli.run("state.orchestrate_show_sls", "k8s.cluster")
    assert shown.returncode == 0, shown
    high = next(iter(shown.data.values()))["sync kubesalt extensions"]["salt"]  # ["state", {arg: value}, ...]
    pillar = next(item["pillar"] for item in high if isinstance(item, dict) and "pillar" in item)
    assert re.fullmatch(r"[0-9a-f]{64}", pillar["k8s_sync"]["fingerprint"]), pillar
    assert salt_cli.run("state.apply", "k8s.sync", pillar=pillar, minion_tgt="worker01").returncode == 0

    def planned(minion):
        ret = salt_cli.run("state.show_sls", "k8s.sync", pillar=pillar, minion_tgt=minion)
        assert ret.returncode == 0, ret
        return sorted(ret.data)

    for minion in NODES:
        assert planned(minion) == ["kubesalt extensions are current"], minion
    extmods = salt_cli.run("config.get", "extension_modules", minion_tgt="worker01").data
    missing, stray = pathlib.Path(extmods, "utils", "kubesalt", "peer.py"), pathlib.Path(extmods, "modules", "stray.py")
    original = missing.read_bytes()
    missing.unlink()
    stray.write_text("x = 1\n")
    assert planned("worker01") == sorted(f"kubesalt {t} synced" for t in ("utils", "modules", "states", "beacons"))
    repair = salt_cli.run("state.apply", "k8s.sync", pillar=pillar, minion_tgt="worker01")
    assert repair.returncode == 0, repair
    assert missing.read_bytes() == original and not stray.exists()
    assert planned("worker01") == ["kubesalt extensions are current"]


def test_the_master_serves_the_formulas_and_the_modules_and_nothing_else(salt_cli):
    """Every file under a file root can be fetched by any minion (cp.get_file): conf/master.d/kubesalt.conf serves
    formulas/ only, so the repository's .git, tests and documents stay out of reach."""
    served = salt_cli.run("cp.list_master", minion_tgt="worker01").data
    assert "k8s/map.jinja" in served and "_modules/k8s_pki.py" in served and "_utils/kubesalt/x509.py" in served
    ours = ("k8s/", "_modules/", "_states/", "_utils/", "_beacons/", "_runners/", "_output/")
    outside = [f for f in served if not f.startswith(ours) and f != "top.sls"]
    assert outside == [], outside
    for path in ("README.md", "tests/conftest.py", ".git/HEAD", "conf/master.d/kubesalt.conf", "pillar.example"):
        assert not salt_cli.run("cp.get_file_str", f"salt://{path}", minion_tgt="worker01").data, path
