"""The component formulas through a real salt-master and real salt-minions (render-only mode: k8s:manage_services is
false, there is no systemd here). What runs for real: rendering, every binary's download + digest check + install
from the local mirror (stand-ins, see conftest.VERSIONS), every config file and unit written where the node's
fs_root puts it, idempotence, test=True, and which node gets which secret. Every rendered unit passes
`systemd-analyze verify`; the config files are parsed by real parsers. The daemons run in tests/kube and the lab."""

import json
import subprocess

import pytest
import tomllib
import yaml

from tests.integration.conftest import stand_in

pytestmark = pytest.mark.integration

UNITS = {
    "master01": [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "containerd",
        "kubelet",
        "kube-proxy",
        "kubesalt-pod-routes",
        "kubesalt-api-balancer",
    ],
    "worker01": ["containerd", "kubelet", "kube-proxy", "kubesalt-pod-routes", "kubesalt-api-balancer"],
}


@pytest.fixture(scope="module")
def master(apply_sls):
    run = apply_sls("master01", "k8s.master")
    assert run.ok, run
    return run


@pytest.fixture(scope="module")
def worker(apply_sls, master):
    # The CA minion (master01) must exist before a worker can be issued certificates.
    run = apply_sls("worker01", "k8s.worker")
    assert run.ok, run
    return run


def test_worker_converges_then_reapplies_with_zero_changes(worker, apply_sls):
    assert worker.changed, "a first apply writes the node's files"
    again = apply_sls("worker01", "k8s.worker")
    assert again.ok and not again.changed, again


def test_master_converges_then_reapplies_with_zero_changes(master, apply_sls):
    again = apply_sls("master01", "k8s.master")
    assert again.ok and not again.changed, again


def test_binaries_come_from_the_mirror_verified(worker, master, node_root):
    for minion, names in {
        "worker01": ["kubelet", "kube-proxy", "containerd", "ctr", "runc", "crictl"],
        "master01": ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"],
    }.items():
        for name in names:
            path = node_root(minion) / "usr/local/bin" / name
            assert path.read_bytes() == stand_in(name), path
            assert path.stat().st_mode & 0o777 == 0o755
    for plugin in ("bridge", "host-local", "loopback", "portmap"):
        assert (node_root("worker01") / "opt/cni/bin" / plugin).read_bytes() == stand_in(plugin)


@pytest.mark.parametrize("minion", sorted(UNITS))
def test_every_rendered_unit_passes_systemd_analyze_verify(worker, master, node_root, minion):
    units = [node_root(minion) / "etc/systemd/system" / f"{name}.service" for name in UNITS[minion]]
    out = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True)
    problems = [
        line
        for line in (out.stdout + out.stderr).splitlines()
        if any(f"{name}.service" in line for name in UNITS[minion])
    ]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def test_worker_config_files_parse_and_point_at_this_node(worker, node_root):
    root = node_root("worker01")
    kubelet = yaml.safe_load((root / "etc/kubernetes/kubelet.yaml").read_text())
    assert kubelet["kind"] == "KubeletConfiguration"
    assert kubelet["tlsCertFile"] == f"{root}/etc/kubernetes/pki/kubelet.crt"
    assert (root / "etc/kubernetes/pki/kubelet.crt").is_file()
    kubeconfig = yaml.safe_load((root / "etc/kubernetes/kubelet.conf").read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6444"  # its node-local balancer
    assert (root / "etc/kubernetes/kubelet.conf").stat().st_mode & 0o777 == 0o600
    containerd = tomllib.loads((root / "etc/containerd/config.toml").read_text())
    assert containerd["version"] == 2  # containerd 1.6
    cri = containerd["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "k8s.gcr.io/pause:3.2"  # the 1.20 profile
    conflist = json.loads((root / "etc/cni/net.d/10-kubesalt.conflist").read_text())
    assert conflist["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.200.21.0/24"}]]
    routes = (root / "etc/systemd/system/kubesalt-pod-routes.service").read_text()
    assert "10.200.11.0/24 via 10.240.0.11" in routes and "10.200.22.0/24 via 10.240.0.22" in routes
    assert "10.200.21.0/24" not in routes


def test_the_api_balancer_configuration_is_one_haproxy_accepts_with_the_node_s_files(worker, master, node_root):
    """`haproxy -c` (Debian's) loads the written configuration: the kube-proxy certificate and its key beside it,
    the Kubernetes CA, every master of the inventory as a checked backend."""
    for minion in ("worker01", "master01"):
        path = node_root(minion) / "etc/kubernetes/api-balancer.cfg"
        check = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "server master01 10.240.0.11:6443" in path.read_text()


def test_only_the_ca_master_gets_admin_and_only_masters_get_cluster_secrets(worker, master, node_root):
    admin = node_root("master01") / "etc/kubernetes/admin.conf"
    assert admin.stat().st_mode & 0o777 == 0o600
    assert yaml.safe_load(admin.read_text())["users"][0]["name"] == "kubernetes-admin"
    assert (
        (node_root("master01") / "etc/kubernetes/pki/service-account.pub")
        .read_text()
        .startswith("-----BEGIN PUBLIC KEY-----")
    )
    for name in (
        "admin.conf",
        "pki/admin.key",
        "pki/service-account.key",
        "pki/encryption-config.yaml",
        "pki/apiserver.key",
        "kube-scheduler.yaml",
    ):
        assert not (node_root("worker01") / "etc/kubernetes" / name).exists(), name


def test_control_plane_units_carry_the_1_20_profile(master, node_root):
    unit = (node_root("master01") / "etc/systemd/system/kube-apiserver.service").read_text()
    assert "--insecure-port=0" in unit and "--authorization-mode=Node,RBAC" in unit
    sched = yaml.safe_load((node_root("master01") / "etc/kubernetes/kube-scheduler.yaml").read_text())
    assert sched["apiVersion"] == "kubescheduler.config.k8s.io/v1beta1"


def test_test_mode_on_a_fresh_worker_reports_every_change_and_writes_nothing(apply_sls, tmp_path):
    fresh = tmp_path / "fresh-worker02"  # a node root no other test has written to, whatever the test order
    fresh.mkdir()
    run = apply_sls("worker02", "k8s.worker", test=True, pillar={"k8s": {"fs_root": str(fresh)}})
    assert run.states and not run.failed, run
    assert list(fresh.iterdir()) == []
    pending = " ".join(run.pending)
    for what in (
        "kubelet binary",
        "containerd systemd unit",
        "kubelet file",
        "kube-proxy file",
        "kubesalt-pod-routes systemd unit",
    ):
        assert what in pending, (what, sorted(run.pending))


def test_worker_clean_removes_units_configs_and_binaries_then_changes_nothing(worker, apply_sls, node_root):
    # Last in this module: it undoes the worker fixture's work (and re-applies it at the end).
    root = node_root("worker01")
    run = apply_sls("worker01", "k8s.worker.clean")
    assert run.ok and run.changed, run
    for path in (
        "etc/systemd/system/kubelet.service",
        "etc/kubernetes/kubelet.yaml",
        "etc/kubernetes/kubelet.conf",
        "etc/containerd/config.toml",
        "usr/local/bin/kubelet",
        "usr/local/bin/containerd",
        "opt/cni/bin/bridge",
        "etc/cni/net.d/10-kubesalt.conflist",
    ):
        assert not (root / path).exists(), path
    assert (root / "etc/kubernetes/pki/kubelet.key").exists(), "certificates are not the node components' to remove"
    again = apply_sls("worker01", "k8s.worker.clean")
    assert again.ok and not again.changed, again
    back = apply_sls("worker01", "k8s.worker")
    assert back.ok and back.changed, back
