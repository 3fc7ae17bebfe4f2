"""Security on the running lab: from a worker node, every way it could reach for what it is not entitled to -- the
admin, apiserver and etcd certificates, another node's identity, the CA key, the service-account key, the encryption
key, etcd itself, cluster secrets -- is refused. Each attempt and its answer is recorded for bench/fault_summary.py.

The attempts go through the real paths: `salt-call publish.publish` on the worker (the salt-master's peer rules, then
kubesalt's policy on the CA minion), TLS to etcd and to the apiserver with the worker's own certificates."""

import json

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.lab.conftest import lab, node_root, record, session_for

pytestmark = pytest.mark.lab


def ca_minion(masters):
    holders = [m for m in masters if (node_root(m) / "etc/kubernetes/pki/ca/kubernetes-ca.key").exists()]
    assert len(holders) == 1, f"exactly one node must hold the CA keys, found {holders}"
    return holders[0]


@pytest.fixture(scope="module")
def csr_pem():
    """What a hostile worker would send: a CSR asking for cluster-admin (system:masters)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes-admin"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


# what -> (function, args); "CSR" stands for the hostile CSR. Each goes worker -> salt-master -> CA minion.
PEER_ATTEMPTS = {
    "admin certificate (system:masters)": ("k8s_pki.sign_remote", ["CSR", "admin"]),
    "kube-apiserver serving certificate": ("k8s_pki.sign_remote", ["CSR", "apiserver"]),
    "etcd peer certificate": ("k8s_pki.sign_remote", ["CSR", "etcd-peer"]),
    "etcd client certificate of the apiserver": ("k8s_pki.sign_remote", ["CSR", "apiserver-etcd-client"]),
    "a kubelet certificate as the CA minion (claims __pub_id=<CA minion>)": (
        "k8s_pki.sign_remote",
        ["CSR", "kubelet", "__pub_id={ca}"],
    ),
    "service-account signing key": ("k8s_pki.fetch_secret_remote", ["service-account"]),
    "encryption key (EncryptionConfiguration)": ("k8s_pki.fetch_secret_remote", ["encryption-config"]),
    "the CA key as a 'secret'": ("k8s_pki.fetch_secret_remote", ["kubernetes-ca.key"]),
    "label the CA minion's Node (claims __pub_id=<CA minion>)": ("k8s_kube.register_node_remote", ["__pub_id={ca}"]),
    "sign as the CA minion itself (k8s_pki.sign_local)": ("k8s_pki.sign_local", ["CSR", "admin"]),
    "read the CA key with cp.get_file_str": ("cp.get_file_str", ["/etc/kubernetes/pki/ca/kubernetes-ca.key"]),
    "read the CA key with cmd.run": ("cmd.run", ["cat /etc/kubernetes/pki/ca/kubernetes-ca.key"]),
    "read the CA key with file.read": ("file.read", ["/etc/kubernetes/pki/ca/kubernetes-ca.key"]),
}


@pytest.mark.parametrize("what", list(PEER_ATTEMPTS))
def test_a_worker_is_refused_over_peer_publish(what, workers, masters, csr_pem):
    worker, ca = workers[0], ca_minion(masters)
    fun, args = PEER_ATTEMPTS[what]
    args = [csr_pem if a == "CSR" else a.format(ca=ca) for a in args]
    out = lab(
        "exec",
        worker,
        "salt-call",
        "--out=json",
        "publish.publish",
        ca,
        fun,
        "arg=" + json.dumps(args),
        check=False,
        timeout=120,
    )
    text = out.stdout + out.stderr
    try:
        answer = json.loads(out.stdout)["local"]
    except ValueError:
        answer = None
    leaked = any(marker in text for marker in ("PRIVATE KEY", "aescbc", "secretbox"))
    reply = answer.get(ca) if isinstance(answer, dict) else None
    if isinstance(reply, dict) and "certificate" in reply:
        # Signed -- for whom? The master sets __pub_id, so a claimed identity must be ignored: the only certificate a
        # worker can ever get is its own.
        cert = x509.load_pem_x509_certificate(reply["certificate"].encode())
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        leaked = leaked or cn != f"system:node:{worker}"
        result = f"claim ignored: signed only the worker's own identity (CN={cn})"
    elif isinstance(reply, dict) and "node" in reply:
        leaked = leaked or reply["node"] != worker
        result = f"claim ignored: acted only on the worker's own Node ({reply['node']})"
    elif answer == {}:
        result = "refused by the salt-master's peer rules (no answer)"
    elif isinstance(answer, dict) and isinstance(answer.get(ca), str):
        result = "refused by kubesalt on the CA minion: " + answer[ca].splitlines()[-1][:200]
    else:
        result = f"UNEXPECTED: {text[-400:]}"
    record(
        "security",
        attempt=f"{worker} -> {fun}: {what}",
        result=result,
        refused=not leaked and not result.startswith("UNEXPECTED"),
    )
    assert not leaked, text
    assert not result.startswith("UNEXPECTED"), text


def test_etcd_refuses_a_workers_own_certificate(workers, masters, inventory):
    """The worker's kubelet certificate is from the Kubernetes CA, not the etcd CA: the TLS handshake fails. The
    server is verified against the etcd CA, and the same request with the API server's etcd client certificate is
    answered (the control), so the refusal can only be etcd's verdict on the worker's certificate."""
    worker, member = workers[0], masters[0]
    pki, member_pki = node_root(worker) / "etc/kubernetes/pki", node_root(member) / "etc/kubernetes/pki"
    url = f"https://{inventory[member]['ip']}:2379/v3/kv/range"
    body = {"key": "L3JlZ2lzdHJ5"}  # base64("/registry")

    def session(cert, key):
        s = requests.Session()
        s.trust_env = False
        s.verify = str(member_pki / "etcd-ca.crt")
        s.cert = (str(cert), str(key))
        return s

    control = session(member_pki / "apiserver-etcd-client.crt", member_pki / "apiserver-etcd-client.key")
    assert control.post(url, json=body, timeout=10).status_code == 200
    try:
        r = session(pki / "kubelet.crt", pki / "kubelet.key").post(url, json=body, timeout=10)
        result = f"UNEXPECTED: HTTP {r.status_code}"
    except requests.exceptions.SSLError as exc:
        result = f"refused by etcd in the TLS handshake ({type(exc).__name__})"
    except requests.exceptions.ConnectionError as exc:
        result = f"refused by etcd in the TLS handshake (connection closed: {type(exc).__name__})"
    record(
        "security",
        attempt=f"{worker} -> etcd {member}:2379 with its kubelet certificate",
        result=result,
        refused=not result.startswith("UNEXPECTED"),
    )
    assert not result.startswith("UNEXPECTED"), result


@pytest.mark.parametrize(
    "what,path",
    [
        ("list every Secret in the cluster", "/api/v1/secrets"),
        ("read the kube-system Secrets", "/api/v1/namespaces/kube-system/secrets"),
        ("list ClusterRoleBindings", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"),
    ],
)
def test_the_apiserver_refuses_a_workers_kubelet_identity(what, path, workers, masters, inventory):
    worker = workers[0]
    s = session_for(worker, "kubelet")
    r = s.get(f"https://{inventory[masters[0]]['ip']}:6443{path}", timeout=10)
    result = (
        f"HTTP {r.status_code} ({r.json().get('reason', '')})"
        if r.headers.get("content-type", "").startswith("application/json")
        else f"HTTP {r.status_code}"
    )
    record(
        "security",
        attempt=f"{worker} (system:node:{worker}) -> apiserver: {what}",
        result=result,
        refused=r.status_code == 403,
    )
    assert r.status_code == 403, (r.status_code, r.text[:300])


def test_no_worker_holds_a_ca_key_or_a_cluster_secret(workers):
    found = []
    for worker in workers:
        root = node_root(worker)
        for rel in (
            "etc/kubernetes/pki/ca",
            "etc/kubernetes/pki/service-account.key",
            "etc/kubernetes/pki/encryption-config.yaml",
            "etc/kubernetes/admin.conf",
            "etc/kubernetes/pki/admin.key",
            "etc/kubernetes/pki/apiserver.key",
            "etc/kubernetes/pki/etcd-server.key",
        ):
            if (root / rel).exists():
                found.append(f"{worker}:/{rel}")
        for key in (root / "etc/kubernetes/pki").glob("*.key"):
            if key.stat().st_mode & 0o077:
                found.append(f"{worker}:/{key.relative_to(root)} is mode {oct(key.stat().st_mode & 0o777)}")
    record(
        "security",
        attempt=f"look for CA keys, cluster secrets, admin credentials or group/world-readable keys on "
        f"{', '.join(workers)}",
        result="none found" if not found else f"FOUND {found}",
        refused=not found,
    )
    assert not found, found
