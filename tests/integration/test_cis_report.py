"""k8s_cis.report through real salt-minions, on what the formulas wrote (k8s.master on master01, k8s.worker on
worker01, each in its fs_root) and against REAL processes started from the rendered units the way systemd would:

- etcd (Debian's binary, the artifact the test mirror serves) from etcd.service: its ExecStartPre chown/chmod of
  the data directory, its LoadCredential= copies, then its ExecStart -- only the member's addresses moved to free
  loopback ports, since 10.240.0.11 does not exist here and other tests run etcd too;
- kube-apiserver 1.20.2 (tests/lab/build, skipped without it) from kube-apiserver.service against that etcd, on a
  free port, its audit log in the test directory: it must come up healthy with every flag kubesalt renders.

The report is asked about these processes only (``pids=``): other etcds on this machine belong to other tests.
The stand-in binaries of the other components exit at once: their flag checks must fail as "not running".
File modes and owners are read on disk, where the formulas wrote them; a changed one must fail."""

import os
import pathlib
import shutil
import subprocess
import time

import pytest
import requests
import yaml

from tests.support.apiserver import BIN_DIR
from tests.support.etcd_cluster import free_ports
from tests.support.units import exec_start, run_exec_start_pre, with_credentials

pytestmark = pytest.mark.integration
MASTER_IP = "10.240.0.11"
START_TIMEOUT = 60


@pytest.fixture(scope="module")
def converged(apply_sls):
    # The CA minion first: a worker's certificates are issued by it. worker02: test_components wants to be the
    # first to converge worker01.
    for minion, sls in (("master01", "k8s.master"), ("worker02", "k8s.worker")):
        run = apply_sls(minion, sls)
        assert run.ok, run


def _wait(probe, proc, what):
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if probe():
                return
        except requests.RequestException:
            pass
        assert proc.poll() is None, f"{what} exited: {proc.stderr.read().decode()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} did not answer within {START_TIMEOUT} s"
        time.sleep(0.3)


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def etcd(converged, node_root, tmp_path_factory):
    """etcd started from master01's etcd.service: ``(process, client port)``."""
    root = node_root("master01")
    unit = (root / "etc/systemd/system/etcd.service").read_text()
    data_dir = root / "var/lib/etcd"
    for entry in data_dir.iterdir():  # a fresh member (another test may have run one on this directory)
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    run_exec_start_pre(unit)  # chown -R etcd:etcd and chmod 0700 of the data directory, as systemd runs them
    client, peer = free_ports(2)
    argv = with_credentials(exec_start(unit), unit, "etcd.service", tmp_path_factory.mktemp("etcd-credentials"))
    moved = {f"{MASTER_IP}:2379": f"127.0.0.1:{client}", f"{MASTER_IP}:2380": f"127.0.0.1:{peer}"}
    for old, new in moved.items():
        argv = [a.replace(old, new) for a in argv]
    argv = [f"--listen-client-urls=https://127.0.0.1:{client}" if a.startswith("--listen-client-urls=") else a
            for a in argv]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        pki = root / "etc/kubernetes/pki"
        session = requests.Session()
        session.trust_env = False
        session.cert = (str(pki / "etcd-healthcheck-client.crt"), str(pki / "etcd-healthcheck-client.key"))
        session.verify = str(pki / "etcd-ca.crt")
        url = f"https://127.0.0.1:{client}/health"
        _wait(lambda: session.get(url, timeout=2).json()["health"] == "true", proc, "etcd")
        yield proc, client
    finally:
        _stop(proc)
        # back to what the formula wrote (k8s:manage_services false: no etcd user, the data directory root's)
        subprocess.run(["chown", "-R", "0:0", str(data_dir)], check=True)


@pytest.fixture(scope="module")
def apiserver(etcd, node_root, tmp_path_factory):
    """kube-apiserver 1.20.2 started from master01's kube-apiserver.service against ``etcd``: ``(process, the
    audit log path it was given)``."""
    binary = pathlib.Path(BIN_DIR) / "kube-apiserver"
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{binary} missing: `make test-kube` builds the Kubernetes 1.20.2 binaries")
    root = node_root("master01")
    unit = (root / "etc/systemd/system/kube-apiserver.service").read_text()
    logs = tmp_path_factory.mktemp("apiserver-logs")
    (port,) = free_ports(1)
    replace = {
        "--secure-port": str(port),
        "--etcd-servers": f"https://127.0.0.1:{etcd[1]}",
        "--audit-log-path": str(logs / "audit.log"),
    }
    argv = [str(binary)] + [
        f"{a.split('=', 1)[0]}={replace[a.split('=', 1)[0]]}" if a.split("=", 1)[0] in replace else a
        for a in exec_start(unit)[1:]
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        admin = yaml.safe_load((root / "etc/kubernetes/admin.conf").read_text())
        user, cluster = admin["users"][0]["user"], admin["clusters"][0]["cluster"]
        session = requests.Session()
        session.trust_env = False
        session.cert = (user["client-certificate"], user["client-key"])
        session.verify = cluster["certificate-authority"]
        _wait(lambda: session.get(f"https://127.0.0.1:{port}/readyz", timeout=2).status_code == 200, proc,
              "kube-apiserver")  # fmt: skip
        yield proc, logs / "audit.log"
    finally:
        _stop(proc)


def _report(salt_cli, minion, *args):
    ret = salt_cli.run("k8s_cis.report", *args, minion_tgt=minion)
    assert isinstance(ret.data, dict) and "checks" in ret.data, ret
    return ret, {row["id"]: row for row in ret.data["checks"]}


def _failed(rows):
    return {i: r["detail"] for i, r in rows.items() if r["result"] == "FAIL"}


def test_live_report_reads_the_real_etcd_and_the_files_the_formulas_wrote(salt_cli, etcd, node_root):
    proc, _ = etcd
    ret, rows = _report(salt_cli, "master01", f"pids=[{proc.pid}]")
    assert ret.data["source"] == "live" and ret.data["processes"]["etcd"] == proc.pid
    assert {name for name, pid in ret.data["processes"].items() if pid is None} == {
        "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}  # fmt: skip
    # etcd: every check from the process's own command line (its credentials are the copies this test made)
    assert {i: r["result"] for i, r in rows.items() if i.startswith("2.")} == {f"2.{n}": "PASS" for n in range(1, 8)}
    assert "etcd-credentials" in rows["2.1"]["detail"]
    data_dir = node_root("master01") / "var/lib/etcd"
    assert rows["1.1.11"]["detail"] == f"{data_dir}: mode 0700"
    assert rows["1.1.12"]["detail"] == f"{data_dir}: owner etcd:etcd" and rows["1.1.12"]["result"] == "PASS"
    # files: modes and owners on disk
    file_checks = [i for i in rows if i.startswith(("1.1.", "4.1."))]
    assert len(file_checks) == 31 and all(rows[i]["result"] == "PASS" for i in file_checks), rows
    assert rows["1.1.19"]["detail"].endswith("PKI files: owner root:root")
    # the stand-ins are not running: every one of their flag checks fails, and nothing else
    not_running = {i for i, d in _failed(rows).items() if "is not running" in d}
    assert not_running == set(_failed(rows)) and {"1.2.1", "1.3.2", "1.4.1", "4.2.1", "4.3.1"} <= not_running
    assert ret.returncode != 0  # a FAIL sets the exit code


def test_live_report_reads_a_real_kube_apiserver_running_the_rendered_flags(salt_cli, etcd, apiserver):
    proc, audit_log = apiserver
    ret, rows = _report(salt_cli, "master01", f"pids=[{etcd[0].pid},{proc.pid}]")
    assert ret.data["processes"]["kube-apiserver"] == proc.pid
    api = {i: r for i, r in rows.items() if i.startswith("1.2.") or i in ("3.2.1", "3.2.2")}
    assert {i: r["result"] for i, r in api.items() if r["result"] in ("FAIL", "N/A")} == {
        "1.2.3": "N/A", "1.2.9": "N/A", "1.2.11": "N/A"}  # fmt: skip
    assert rows["1.2.30"]["detail"] == "--service-account-extend-token-expiration=false"
    assert "Secrets written with secretbox" in rows["1.2.28"]["detail"]
    assert rows["1.2.16"]["detail"] == f"--audit-log-path={audit_log}"  # what this test gave the process: read live


def test_live_report_fails_a_file_changed_on_disk(salt_cli, etcd, node_root):
    root = node_root("master01")
    unit = root / "etc/systemd/system/kube-apiserver.service"
    kubeconfig = root / "etc/kubernetes/kubelet.conf"
    try:
        unit.chmod(0o644)
        os.chown(kubeconfig, 65534, 0)
        _, rows = _report(salt_cli, "master01", f"pids=[{etcd[0].pid}]")
        assert rows["1.1.1"]["result"] == "FAIL" and rows["1.1.1"]["detail"] == f"{unit} is 0644"
        assert rows["4.1.6"]["result"] == "FAIL" and rows["4.1.6"]["detail"] == f"{kubeconfig} is nobody:root"
        assert rows["1.1.2"]["result"] == "PASS" and rows["4.1.5"]["result"] == "PASS"
    finally:
        unit.chmod(0o600)
        os.chown(kubeconfig, 0, 0)


def test_live_report_on_a_worker(salt_cli, converged):
    ret, rows = _report(salt_cli, "worker02", "pids=[1]")
    assert ret.data["roles"] == ["node"] and set(ret.data["counts"]) == {"4", "total"}
    assert all(rows[i]["result"] == "PASS" for i in rows if i.startswith("4.1."))
    # every kubelet and kube-proxy check reads the process: none runs here
    assert set(_failed(rows)) == {i for i in rows if i.startswith(("4.2.", "4.3."))}
    assert all("is not running" in d for d in _failed(rows).values())


@pytest.mark.parametrize("minion", ["master01", "worker02"])
def test_rendered_report_passes_what_the_next_run_writes(salt_cli, converged, minion):
    ret, rows = _report(salt_cli, minion, "live=False")
    assert ret.data["source"] == "rendered" and ret.data["kubernetes"] == "1.20.2"
    assert _failed(rows) == {} and ret.returncode == 0
    assert {i for i, r in rows.items() if r["result"] == "N/A"} <= {
        "1.2.3", "1.2.9", "1.2.11", "4.2.7", "4.2.10", "4.2.14", "5.2.1"}  # fmt: skip
