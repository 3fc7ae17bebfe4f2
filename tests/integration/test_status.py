"""`salt-run k8s.status` on a real salt-master with real minions: the runner and its outputter reach the master
through `salt-run saltutil.sync_all` (the file_roots route), every node answers k8s_ops.node_status, and the exit
code says whether something needs attention -- a certificate near expiry, a minion that does not answer. (etcd, the
API and Node readiness against real daemons: tests/integration/test_status_daemons.py.)"""

import json
import subprocess

import pytest

from tests.integration.conftest import NODES, VERSIONS, salt_run, snapshot
from tests.support.pki_fixtures import reissue

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki_everywhere(apply_sls):
    """Every node converged as far as it goes without systemd: certificates, binaries (stand-ins that answer
    --version, and Debian's real etcd), units."""
    for minion, (grains, _, _) in NODES.items():
        run = apply_sls(minion, f"k8s.{grains[0]}")
        assert run.ok, run
    return True


def status_json(salt_master, *args):
    out = salt_run(salt_master, "--out=json", "k8s.status", *args)
    answer = json.loads(out.stdout)
    assert set(answer) == {"outputter", "report", "retcode"}, answer
    assert answer["retcode"] == out.returncode, (answer["retcode"], out.returncode)
    return out.returncode, answer["report"]


def certificates_on_disk(node_root):
    return {
        (minion, str(path))
        for minion in NODES
        for path in (node_root(minion) / "etc/kubernetes/pki").rglob("*")
        if path.suffix in (".crt", ".pem")
    }


def test_status_lists_every_certificate_on_every_minion_soonest_first(
    runner_synced, pki_everywhere, salt_master, node_root
):
    rc, report = status_json(salt_master)
    assert rc == 0 and report["ok"] and report["attention"] == [], report["attention"]
    listed = {(c["minion"], c["path"]) for c in report["certificates"]}
    assert listed == certificates_on_disk(node_root)
    days = [c["days_left"] for c in report["certificates"]]
    assert days == sorted(days) and all(isinstance(d, int) for d in days)
    kubelet = next(c for c in report["certificates"] if c["minion"] == "worker01" and c["identity"] == "kubelet")
    assert kubelet["state"] == "OK" and 360 <= kubelet["days_left"] <= 365
    assert report["missing"] == [] and sorted(report["nodes"]) == sorted(NODES)
    # Versions from the installed binaries' --version; nothing probed (k8s:manage_services is false here).
    assert report["nodes"]["worker01"]["versions"]["kubelet"]["installed"] == VERSIONS["kubernetes"]
    assert report["nodes"]["worker01"]["versions"]["containerd"]["installed"] == VERSIONS["containerd"]
    assert report["nodes"]["master01"]["roles"] == ["etcd", "master"]
    etcd = subprocess.run(["/usr/bin/etcd", "--version"], capture_output=True, text=True).stdout.split()
    assert report["nodes"]["master01"]["versions"]["etcd"]["installed"] == etcd[etcd.index("Version:") + 1]
    assert report["probed"] is False and report["etcd"]["probed"] is False


def test_status_prints_a_compact_table_by_default(runner_synced, pki_everywhere, salt_master):
    out = salt_run(salt_master, "k8s.status")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "kubesalt: all OK", out.stdout
    assert any(line.split()[:3] == ["worker01", "worker", "not"] for line in lines), out.stdout
    header = next(i for i, line in enumerate(lines) if line.startswith("CERTIFICATE"))
    rows = [line.split() for line in lines[header + 1 :] if line.strip()]
    assert {r[1] for r in rows} == set(NODES) and all(r[3] == "OK" for r in rows), out.stdout
    assert len(out.stdout.splitlines()) < 80 and "{" not in out.stdout  # a table, not a data dump
    print(out.stdout)  # the README's example comes from here


@pytest.fixture
def near_expiry_kubelet(pki_everywhere, node_root, apply_sls):
    path = node_root("worker01") / "etc/kubernetes/pki/kubelet.crt"
    original = path.read_bytes()
    reissue(path, node_root("master01") / "etc/kubernetes/pki/ca", days=9)
    yield path
    path.write_bytes(original)


def test_a_certificate_near_expiry_gives_a_non_zero_exit_naming_it(runner_synced, near_expiry_kubelet, salt_master):
    rc, report = status_json(salt_master)
    assert rc == 1 and not report["ok"]
    assert len(report["attention"]) == 1, report["attention"]
    assert report["attention"][0].startswith("certificate kubelet on worker01: renew, 9 days left (expires on ")
    first = report["certificates"][0]
    assert (first["minion"], first["identity"], first["state"], first["days_left"]) == (
        "worker01",
        "kubelet",
        "renew",
        9,
    )
    out = salt_run(salt_master, "k8s.status")
    assert out.returncode == 1
    assert out.stdout.splitlines()[:2] == ["kubesalt: 1 thing(s) need attention", f"  - {report['attention'][0]}"]


def test_a_stopped_minion_is_reported_missing_with_a_non_zero_exit(
    runner_synced, pki_everywhere, salt_master, salt_minions, salt_cli
):
    salt_minions["worker02"].terminate()
    try:
        rc, report = status_json(salt_master, "timeout=10")
        assert rc == 1
        assert report["missing"] == ["worker02"], report
        assert "minion worker02 did not answer" in report["attention"]
        assert report["nodes"]["worker02"]["answered"] is False
        assert {c["minion"] for c in report["certificates"]} == {"master01", "worker01"}
    finally:
        salt_minions["worker02"].start(start_timeout=120)
        assert salt_cli.run("test.ping", minion_tgt="worker02").data is True


def test_drift_lists_what_a_rerun_would_change_and_changes_nothing(
    runner_synced, pki_everywhere, salt_master, pillar_override, node_root
):
    rc, report = status_json(salt_master, "drift=True", "timeout=120")
    assert rc == 0 and report["drift"] == {m: {"pending": [], "failed": []} for m in NODES}, report["drift"]
    pillar_override("k8s:\n  kubelet:\n    max_pods: 50\n")
    before = {m: snapshot(node_root(m)) for m in NODES}
    rc, report = status_json(salt_master, "drift=True", "timeout=120")
    assert rc == 1
    for minion in NODES:
        pending = report["drift"][minion]["pending"]
        assert any(p.startswith("kubelet file ") and p.endswith("kubelet.yaml") for p in pending), (minion, pending)
        assert f"{minion}: a re-run would change {len(pending)} state(s), 0 fail" in report["attention"]
    assert {m: snapshot(node_root(m)) for m in NODES} == before  # test=True: nothing written
