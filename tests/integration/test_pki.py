"""PKI through a real salt-master: CAs on the CA minion, node certificates signed over real peer publish under the
per-identity policy, and a worker's attempts to get what it is not entitled to."""

import json
import os
import stat

import pytest
from cryptography import x509

from kubesalt import x509 as core
from tests.integration.conftest import snapshot

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ca_ready(apply_sls):
    run = apply_sls("master01", "k8s.pki")
    assert run.ok, run
    return run


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_ca_private_keys_exist_only_on_the_ca_minion(ca_ready, node_root, apply_sls):
    assert apply_sls("worker01", "k8s.pki").ok
    ca_dir = node_root("master01") / "etc/kubernetes/pki/ca"
    keys = sorted(p.name for p in ca_dir.glob("*-ca.key"))
    assert keys == ["etcd-ca.key", "front-proxy-ca.key", "kubernetes-ca.key"]
    assert (ca_dir / "service-account.key").is_file()  # the authoritative copy of the cluster secret
    assert _mode(ca_dir) == 0o700
    for key in ca_dir.glob("*.key"):
        assert _mode(key) == 0o600
    for other in ("worker01", "worker02"):
        assert not list((node_root(other)).rglob("*-ca.key")), f"a CA key reached {other}"


def test_master_holds_control_plane_certificates_chained_to_the_cas(ca_ready, node_root):
    pki_dir = node_root("master01") / "etc/kubernetes/pki"
    for identity in (
        "apiserver",
        "apiserver-kubelet-client",
        "apiserver-etcd-client",
        "front-proxy-client",
        "kube-controller-manager",
        "kube-scheduler",
        "admin",
        "etcd-server",
        "etcd-peer",
    ):
        info = core.certificate_info((pki_dir / f"{identity}.crt").read_text())
        assert _mode(pki_dir / f"{identity}.key") == 0o600
        assert _mode(pki_dir / f"{identity}.crt") == 0o600  # CIS 1.1.20: certificates 600 too
        assert info["issuer"]["cn"], identity
    apiserver = core.certificate_info((pki_dir / "apiserver.crt").read_text())
    assert {"10.32.0.1", "10.240.0.11", "127.0.0.1"} <= set(apiserver["ips"])
    assert "kubernetes.default.svc.cluster.local" in apiserver["dns"]
    assert (pki_dir / "service-account.key").is_file() and _mode(pki_dir / "service-account.key") == 0o600
    admin = core.certificate_info((pki_dir / "admin.crt").read_text())
    assert admin["subject"]["o"] == ["system:masters"]


def test_worker_gets_its_own_kubelet_and_kube_proxy_certificates_over_peer_publish(ca_ready, apply_sls, node_root):
    run = apply_sls("worker01", "k8s.pki")
    assert run.ok, run
    pki_dir = node_root("worker01") / "etc/kubernetes/pki"
    kubelet = core.certificate_info((pki_dir / "kubelet.crt").read_text())
    assert kubelet["subject"]["cn"] == "system:node:worker01"
    assert kubelet["subject"]["o"] == ["system:nodes"]
    assert "10.240.0.21" in kubelet["ips"]
    proxy = core.certificate_info((pki_dir / "kube-proxy.crt").read_text())
    assert proxy["subject"]["cn"] == "system:kube-proxy"
    # Chain: signed by the Kubernetes CA the master holds.
    ca = _cert(node_root("master01") / "etc/kubernetes/pki/ca/kubernetes-ca.crt")
    _cert(pki_dir / "kubelet.crt").verify_directly_issued_by(ca)
    held = sorted(p.stem for p in pki_dir.glob("*.key"))
    assert held == ["kube-proxy", "kubelet"], held
    assert not (pki_dir / "service-account.key").exists()


def test_second_apply_changes_nothing_on_ca_and_worker(ca_ready, apply_sls):
    for minion in ("master01", "worker01"):
        run = apply_sls(minion, "k8s.pki")
        assert run.ok, run
        assert run.changed == {}, run


def test_test_mode_reports_every_pending_certificate_and_writes_nothing(ca_ready, apply_sls, node_root):
    # Another test (the orchestration) may have converged worker02 already: make it a node without certificates.
    for path in (node_root("worker02") / "etc/kubernetes/pki").glob("kube*"):
        path.unlink()
    before = snapshot(node_root("worker02"))
    run = apply_sls("worker02", "k8s.pki", test=True)
    assert run.ok, run
    assert {"kubelet certificate", "kube-proxy certificate"} <= {k.split("_|-")[1] for k in run.pending}
    assert snapshot(node_root("worker02")) == before


def _publish(salt_cli, caller, fun, args, **kwargs):
    argv = ["publish.publish", "master01", fun, f"arg={json.dumps(args)}"]
    if kwargs:
        argv.append(f"kwarg={json.dumps(kwargs)}")
    return salt_cli.run(*argv, minion_tgt=caller).data


@pytest.fixture(scope="module")
def worker_csr():
    key = core.generate_private_key()
    return core.create_csr(key, "system:masters", organizations=["system:masters"])


ATTEMPTS = {
    "admin certificate": ("k8s_pki.sign_remote", ["CSR", "admin"], {}),
    "apiserver certificate": ("k8s_pki.sign_remote", ["CSR", "apiserver"], {}),
    "etcd peer certificate": ("k8s_pki.sign_remote", ["CSR", "etcd-peer"], {}),
    "etcd client certificate": ("k8s_pki.sign_remote", ["CSR", "apiserver-etcd-client"], {}),
    "service-account key": ("k8s_pki.fetch_secret_remote", ["service-account"], {}),
    "encryption key": ("k8s_pki.fetch_secret_remote", ["encryption-config"], {}),
    # publish.publish passes keyword arguments as key=value strings; the master must not let the caller set __pub_id.
    "admin, claiming to be master01": ("k8s_pki.sign_remote", ["CSR", "admin", "__pub_id=master01"], {}),
}


@pytest.mark.parametrize("attempt", sorted(ATTEMPTS))
def test_worker_is_refused_what_it_is_not_entitled_to(ca_ready, salt_cli, worker_csr, attempt):
    fun, args, kwargs = ATTEMPTS[attempt]
    args = [worker_csr if a == "CSR" else a for a in args]
    reply = _publish(salt_cli, "worker01", fun, args, **kwargs)
    answer = reply.get("master01") if isinstance(reply, dict) else reply
    assert isinstance(answer, str) and "worker01" in answer and "not" in answer, reply
    assert "BEGIN CERTIFICATE" not in json.dumps(reply) and "PRIVATE KEY" not in json.dumps(reply)


@pytest.mark.parametrize(
    "fun,args",
    [
        ("k8s_pki.sign_local", ["CSR", "admin"]),
        ("cp.get_file_str", ["/etc/kubernetes/pki/ca/kubernetes-ca.key"]),
        ("cmd.run", ["cat /etc/kubernetes/pki/ca/kubernetes-ca.key"]),
    ],
)
def test_functions_outside_the_peer_rules_return_nothing(ca_ready, salt_cli, worker_csr, fun, args):
    args = [worker_csr if a == "CSR" else a for a in args]
    assert _publish(salt_cli, "worker01", fun, args) == {}


def test_worker_asking_for_system_masters_gets_only_its_kubelet_identity(ca_ready, salt_cli, worker_csr):
    reply = _publish(salt_cli, "worker01", "k8s_pki.sign_remote", [worker_csr, "kubelet"])["master01"]
    info = core.certificate_info(reply["certificate"])
    assert info["subject"] == {"cn": "system:node:worker01", "o": ["system:nodes"]}


def _batch(requests, **extra):
    """The argument list of a k8s_pki.sign_batch_remote peer publish, as kubesalt.peer.named builds it."""
    return [{"__kwarg__": True, "requests": requests, **extra}]


def test_a_worker_gets_its_certificates_in_one_batch_under_its_own_identity(ca_ready, salt_cli, worker_csr):
    reply = _publish(
        salt_cli, "worker01", "k8s_pki.sign_batch_remote", _batch({"kubelet": worker_csr, "kube-proxy": worker_csr})
    )["master01"]
    assert set(reply) == {"kubelet", "kube-proxy"}, reply
    assert core.certificate_info(reply["kubelet"]["certificate"])["subject"] == {
        "cn": "system:node:worker01",
        "o": ["system:nodes"],
    }
    assert core.certificate_info(reply["kube-proxy"]["certificate"])["subject"]["cn"] == "system:kube-proxy"


@pytest.mark.parametrize(
    "requests, extra, refused",
    [
        ({"kubelet": "CSR", "admin": "CSR"}, {}, "admin"),
        ({"kubelet": "CSR", "apiserver": "CSR"}, {}, "apiserver"),
        ({"kubelet": "CSR", "etcd-peer": "CSR"}, {}, "etcd-peer"),
        ({"kube-proxy": "CSR", "admin": "CSR"}, {"__pub_id": "master01"}, "admin"),
        ({"kubelet": "CSR", "kube-proxy": "not a CSR"}, {}, "kube-proxy"),
    ],
    ids=["admin", "apiserver", "etcd-peer", "admin-claiming-master01", "bad-csr"],
)
def test_a_batch_with_one_request_refused_signs_nothing_and_names_it(
    ca_ready, salt_cli, worker_csr, requests, extra, refused
):
    requests = {k: worker_csr if v == "CSR" else v for k, v in requests.items()}
    reply = _publish(salt_cli, "worker01", "k8s_pki.sign_batch_remote", _batch(requests, **extra))
    answer = reply.get("master01") if isinstance(reply, dict) else reply
    assert isinstance(answer, str), reply
    assert f"request for '{refused}' refused" in answer and "minion 'worker01'" in answer, answer
    assert "BEGIN CERTIFICATE" not in json.dumps(reply) and "PRIVATE KEY" not in json.dumps(reply)
