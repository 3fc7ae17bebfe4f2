"""Fixtures for `make lab-test`: the REAL cluster `make lab` brought up (systemd-nspawn nodes, the formula's
containerd/kubelet/kube-proxy/control plane, etcd), reached from the host through the lab's admin kubeconfig, the
nodes' own certificates (their root filesystems are visible on the host) and `tests/lab/lab.sh`."""

import json
import os
import pathlib
import subprocess
import time

import pytest
import requests

HERE = pathlib.Path(__file__).resolve().parent
LAB_SH = HERE / "lab.sh"
STATE = pathlib.Path(os.environ.get("LAB_STATE", "/var/lib/kubesalt-lab"))
ADMIN = STATE / "admin.conf"
KUBECTL = pathlib.Path(os.environ.get("KUBESALT_CACHE", "/var/cache/kubesalt")) / "kubernetes/1.20.2/bin/kubectl"


def pytest_configure(config):
    config.addinivalue_line("markers", "core: the core lab checks CI runs on every submission (make lab-test-core)")


def lab(*args, timeout=900, check=True):
    """Run tests/lab/lab.sh; return the CompletedProcess (stdout/stderr as text)."""
    out = subprocess.run(["bash", str(LAB_SH), *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"lab.sh {' '.join(args)} -> {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def kubectl(*args, check=True, timeout=120, input=None):
    out = subprocess.run(
        [str(KUBECTL), f"--kubeconfig={ADMIN}", *args], capture_output=True, text=True, timeout=timeout, input=input
    )
    if check and out.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} -> {out.returncode}: {out.stderr.strip()}")
    return out.stdout


def kubectl_json(*args):
    return json.loads(kubectl(*args, "-o", "json"))


REPORTS = STATE / "reports"


def record(kind, **fields):
    """Append one finding (a fault survived, a security attempt and its answer, ...) to
    ``$LAB_STATE/reports/<kind>.jsonl`` for ``bench/fault_summary.py``. The tests assert; this only keeps what they
    saw."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    with (REPORTS / f"{kind}.jsonl").open("a") as f:
        f.write(json.dumps({"at": time.time(), **fields}) + "\n")


def node_root(node_id):
    return STATE / "nodes" / node_id / "rootfs"


def wait_for(predicate, timeout, what, interval=2):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except (AssertionError, subprocess.SubprocessError, requests.RequestException, ValueError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last})")


@pytest.fixture(scope="session")
def inventory():
    """minion id -> {roles, ip} of the running lab (its pillar)."""
    data = json.loads((STATE / "lab.json").read_text()) if (STATE / "lab.json").exists() else None
    if not data or not ADMIN.exists():
        pytest.fail("no running lab (or no admin kubeconfig yet): run `make lab` first")
    return {nid: {"roles": n["roles"], "ip": n["ip"]} for nid, n in data["nodes"].items()}


@pytest.fixture(scope="session")
def masters(inventory):
    return sorted(n for n, v in inventory.items() if "master" in v["roles"])


@pytest.fixture(scope="session")
def workers(inventory):
    return sorted(n for n, v in inventory.items() if "worker" in v["roles"])


def session_for(node_id, identity, ca="kubernetes-ca"):
    """A requests session with ``identity``'s certificate as held by ``node_id`` (read from its root)."""
    pki = node_root(node_id) / "etc/kubernetes/pki"
    s = requests.Session()
    s.trust_env = False
    s.verify = str(pki / f"{ca}.crt")
    if identity:
        s.cert = (str(pki / f"{identity}.crt"), str(pki / f"{identity}.key"))
    return s
