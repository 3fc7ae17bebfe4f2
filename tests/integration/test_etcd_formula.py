"""The etcd formula through real salt-minions: the unit it renders is run with THIS etcd binary (Debian's
etcd-server) and answers over mutual TLS with the certificates the PKI formula issued; idempotent; test=True."""

import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.integration.conftest import snapshot
from tests.support.units import exec_start, with_credentials

pytestmark = pytest.mark.integration
ETCD = "/usr/bin/etcd"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def etcd_pillar():
    # Package install (the host has Debian's etcd-server: pkg.installed is a real no-op) and free loopback ports.
    return {"k8s": {"etcd": {"install": "package", "client_port": _free_port(), "peer_port": _free_port()}}}


@pytest.fixture(scope="module")
def applied(apply_sls, etcd_pillar):
    if not os.access(ETCD, os.X_OK):
        pytest.skip(f"{ETCD} missing: run tests/bootstrap.sh (installs Debian etcd-server)")
    run = apply_sls("master01", "k8s.etcd", pillar=etcd_pillar)
    assert run.ok, run
    return run


def _environment(unit_path):
    """The variables of the unit's EnvironmentFile=, as systemd reads them."""
    path = re.search(r"^EnvironmentFile=-?(.+)$", unit_path.read_text(), re.M).group(1)
    lines = pathlib.Path(path).read_text().splitlines()
    assert oct(pathlib.Path(path).stat().st_mode & 0o777) == "0o600"
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_member_unit_requires_client_and_peer_certificates(applied, node_root):
    argv = exec_start((node_root("master01") / "etc/systemd/system/etcd.service").read_text())
    assert argv[0] == ETCD
    assert "--client-cert-auth" in argv and "--peer-client-cert-auth" in argv
    # the first start's settings come from the file the unit reads, written because the data directory is empty
    assert not any(a.startswith("--initial-cluster=") for a in argv)
    env = _environment(node_root("master01") / "etc/systemd/system/etcd.service")
    assert env["ETCD_INITIAL_CLUSTER"].startswith("master01=https://10.240.0.11:")
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "new"
    data_dir = node_root("master01") / "var/lib/etcd"
    assert oct(data_dir.stat().st_mode & 0o777) == "0o700"


def test_rendered_unit_passes_systemd_analyze_verify(applied, node_root):
    unit = node_root("master01") / "etc/systemd/system/etcd.service"
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    problems = [line for line in (out.stdout + out.stderr).splitlines() if "etcd.service" in line]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


@pytest.fixture(scope="module")
def member(applied, node_root, etcd_pillar, tmp_path_factory):
    """etcd started from the rendered unit, as systemd would start it: (process, argv, client port)."""
    root = node_root("master01")
    unit = (root / "etc/systemd/system/etcd.service").read_text()
    assert "User=etcd" in unit
    argv = with_credentials(exec_start(unit), unit, "etcd.service", tmp_path_factory.mktemp("credentials"))
    # The member's inventory address (10.240.0.11) does not exist on this machine: listen on loopback only, every
    # other flag exactly as rendered.
    port = etcd_pillar["k8s"]["etcd"]["client_port"]
    argv = [a.replace("10.240.0.11", "127.0.0.1") for a in argv]
    argv = [
        f"--listen-client-urls=https://127.0.0.1:{port}" if a.startswith("--listen-client-urls") else a for a in argv
    ]
    env = {
        k: v.replace("10.240.0.11", "127.0.0.1")
        for k, v in _environment(root / "etc/systemd/system/etcd.service").items()
    }
    env.update({k: v for k, v in os.environ.items() if not k.startswith("ETCD")})
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        pki = root / "etc/kubernetes/pki"
        cert = (str(pki / "etcd-healthcheck-client.crt"), str(pki / "etcd-healthcheck-client.key"))
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"https://127.0.0.1:{port}/health", cert=cert, verify=str(pki / "etcd-ca.crt"), timeout=2)
                break
            except requests.RequestException:
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "etcd did not answer within 30 s"
                time.sleep(0.3)
        yield proc, argv, port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_etcd_runs_with_the_rendered_flags_and_demands_client_certificates(member, node_root, etcd_pillar):
    _proc, argv, port = member
    pki = node_root("master01") / "etc/kubernetes/pki"
    url = f"https://127.0.0.1:{port}/health"
    cert = (str(pki / "etcd-healthcheck-client.crt"), str(pki / "etcd-healthcheck-client.key"))
    answer = requests.get(url, cert=cert, verify=str(pki / "etcd-ca.crt"), timeout=5)
    assert answer.status_code == 200 and answer.json()["health"] == "true"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, verify=str(pki / "etcd-ca.crt"), timeout=5)
    assert f"127.0.0.1:{etcd_pillar['k8s']['etcd']['peer_port']}" in " ".join(argv)


def test_the_backup_timer_runs_a_verified_snapshot_of_the_member_without_the_master(
    member, apply_sls, etcd_pillar, node_root, salt_minions
):
    """k8s.etcd.backup writes the timer's units; the command the timer starts (salt-call --local, every argument on
    its command line) takes a real snapshot of the running member; the SLS is idempotent."""
    run = apply_sls("master01", "k8s.etcd.backup", pillar=etcd_pillar)
    assert run.ok, run
    assert apply_sls("master01", "k8s.etcd.backup", pillar=etcd_pillar).changed == {}
    root = node_root("master01")
    units = root / "etc/systemd/system"
    assert "OnCalendar=daily" in (units / "kubesalt-etcd-backup.timer").read_text()
    service = (units / "kubesalt-etcd-backup.service").read_text()
    argv = exec_start(service)
    assert argv[1:4] == ["--local", "--retcode-passthrough", "k8s_etcd.backup"]
    # this machine's salt-call, with this test minion's configuration (its synced modules) instead of /etc/salt
    salt_call = [str(pathlib.Path(sys.executable).parent / "salt-call"), "-c", str(salt_minions["master01"].config_dir)]
    done = subprocess.run(salt_call + argv[1:] + ["--out=json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    backups = root / "var/backups/kubesalt/etcd"
    snapshots = sorted(backups.glob("etcd-snapshot-*.db"))
    assert len(snapshots) == 1 and oct(snapshots[0].stat().st_mode & 0o777) == "0o600"
    assert oct(backups.stat().st_mode & 0o777) == "0o700"
    assert str(snapshots[0]) in done.stdout and '"revision"' in done.stdout
    worker = apply_sls("worker01", "k8s.etcd.backup", pillar=etcd_pillar)
    assert worker.ok and worker.changed == {}, worker


def test_second_apply_changes_nothing(applied, apply_sls, etcd_pillar):
    run = apply_sls("master01", "k8s.etcd", pillar=etcd_pillar)
    assert run.ok, run
    assert run.changed == {}, run


def test_test_mode_on_a_fresh_change_writes_nothing(applied, apply_sls, etcd_pillar, node_root):
    pillar = {"k8s": {"etcd": dict(etcd_pillar["k8s"]["etcd"], peer_port=_free_port())}}
    before = snapshot(node_root("master01"))
    run = apply_sls("master01", "k8s.etcd", test=True, pillar=pillar)
    assert run.ok, run
    assert any("etcd systemd unit" in k for k in run.pending), run
    assert snapshot(node_root("master01")) == before


def test_workers_are_not_etcd_members(apply_sls, etcd_pillar, node_root):
    run = apply_sls("worker01", "k8s.etcd", pillar=etcd_pillar)
    assert run.ok and run.changed == {}, run
    assert not (node_root("worker01") / "etc/systemd/system/etcd.service").exists()
