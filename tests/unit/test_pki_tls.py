"""The issued certificates used for real: RFC 5280 path validation, mutual TLS with Python's ssl, and a real etcd
cluster (Debian's /usr/bin/etcd 3.4) whose client and peer TLS use the policy's etcd certificates."""

import base64
import ipaddress
import os
import pathlib
import socket
import ssl
import threading

import pytest
import requests
from cryptography import x509
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store

from kubesalt import x509 as core
from tests.support import etcd_cluster
from tests.support.pki_fixtures import issued_cluster, rsa_issued_cluster  # noqa: F401  (fixtures)

CAS = ("kubernetes-ca", "etcd-ca", "front-proxy-ca")


def load(path):
    return x509.load_pem_x509_certificate(pathlib.Path(path).read_bytes())


def verifier(ca_cert, server_name=None):
    """cryptography's RFC 5280 path validation; client certificates without SANs are allowed (Kubernetes uses them)."""
    builder = PolicyBuilder().store(Store([ca_cert]))
    if server_name is not None:
        return builder.build_server_verifier(server_name)
    ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    return builder.extension_policies(
        ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee
    ).build_client_verifier()


def everything_issued(cluster):
    for minion in cluster.pillar["nodes"]:
        ents = cluster.execution(minion).entitlements(cluster.config(minion), minion)
        for identity, ent in ents.items():
            if cluster.files(minion, identity)["cert"].exists():
                yield minion, identity, ent


# path validation ----------------------------------------------------------------------------------------------------
def test_every_issued_certificate_validates_against_its_ca_for_each_of_its_usages_and_names(issued_cluster):
    checked = 0
    for minion, identity, ent in everything_issued(issued_cluster):
        files = issued_cluster.files(minion, identity)
        ca, leaf = load(files["ca_file"]), load(files["cert"])
        assert files["ca_file"].name == f"{ent['ca']}.crt"
        if "client" in ent["usages"]:
            verifier(ca).verify(leaf, [])
        if "server" in ent["usages"]:
            names = [x509.DNSName(d) for d in ent["dns"]] + [
                x509.IPAddress(ipaddress.ip_address(i)) for i in ent["ips"]
            ]
            for name in names:
                verifier(ca, name).verify(leaf, [])
        checked += 1
    assert checked == 3 * 11 + 2 + 2 * 2  # every master 11, the CA minion also admin and super-admin; workers 2


def test_a_certificate_does_not_validate_for_a_usage_it_was_not_issued_for(issued_cluster):
    files = issued_cluster.files("master01", "apiserver")
    with pytest.raises(x509.verification.VerificationError, match="EKU"):
        verifier(load(files["ca_file"])).verify(load(files["cert"]), [])
    files = issued_cluster.files("master01", "admin")
    with pytest.raises(x509.verification.VerificationError):
        verifier(load(files["ca_file"]), x509.DNSName("localhost")).verify(load(files["cert"]), [])


def test_no_certificate_validates_under_another_cluster_ca(issued_cluster):
    pki_dir = pathlib.Path(issued_cluster.config("master01")["paths"]["pki_dir"])
    for minion, identity, ent in everything_issued(issued_cluster):
        leaf = load(issued_cluster.files(minion, identity)["cert"])
        for other in CAS:
            if other != ent["ca"]:
                with pytest.raises(x509.verification.VerificationError):
                    verifier(load(pki_dir / f"{other}.crt")).verify(leaf, [])


def test_every_certificate_carries_exactly_the_subject_and_sans_of_its_entitlement(issued_cluster):
    for minion, identity, ent in everything_issued(issued_cluster):
        info = core.certificate_info(issued_cluster.files(minion, identity)["cert"].read_text())
        assert info["subject"] == {"cn": ent["cn"], "o": ent["o"]}, (minion, identity)
        assert (sorted(info["dns"]), sorted(info["ips"])) == (sorted(ent["dns"]), sorted(ent["ips"]))
        assert (
            info["usages"] == ent["usages"]
            and info["issuer"]["cn"]
            == {"kubernetes-ca": "kubernetes", "etcd-ca": "etcd-ca", "front-proxy-ca": "front-proxy-ca"}[ent["ca"]]
        )


# mutual TLS with Python's ssl ---------------------------------------------------------------------------------------
def tls_exchange(server, client, server_ca, client_ca, hostname):
    """One TLS connection on 127.0.0.1: a server that requires a client certificate from ``server_ca`` and answers
    with the client's CN; a client (``client`` files or None) that verifies the server against ``client_ca``."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(server["cert"], server["key"])
    sctx.load_verify_locations(server_ca)
    sctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    result = {}

    def serve():
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with sctx.wrap_socket(conn, server_side=True) as tls:
                subject = dict(item[0] for item in tls.getpeercert()["subject"])
                tls.sendall(f"hello {subject['commonName']}".encode())
        except (ssl.SSLError, OSError) as exc:
            result["server_error"] = str(exc)
        finally:
            listener.close()

    thread = threading.Thread(target=serve)
    thread.start()
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(client_ca)
    if client:
        cctx.load_cert_chain(client["cert"], client["key"])
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            cctx.wrap_socket(raw, server_hostname=hostname) as tls,
        ):
            result["reply"] = tls.recv(100).decode()
    except (ssl.SSLError, OSError) as exc:
        result["client_error"] = str(exc)
    thread.join(15)
    assert not thread.is_alive()
    return result


@pytest.fixture(params=["ecdsa-p256", "rsa-2048"])
def tls_cluster(request):
    return request.getfixturevalue("issued_cluster" if request.param == "ecdsa-p256" else "rsa_issued_cluster")


@pytest.mark.parametrize("hostname", ["kubernetes.default.svc.cluster.local", "10.32.0.1", "127.0.0.1", "master01"])
def test_apiserver_and_admin_certificates_complete_a_mutual_tls_handshake(tls_cluster, hostname):
    server, admin = tls_cluster.files("master01", "apiserver"), tls_cluster.files("master01", "admin")
    result = tls_exchange(server, admin, server["ca_file"], admin["ca_file"], hostname)
    assert result == {"reply": "hello kubernetes-admin"}


def test_a_client_certificate_from_another_ca_is_refused(tls_cluster):
    server = tls_cluster.files("master01", "apiserver")
    etcd_client = tls_cluster.files("master01", "apiserver-etcd-client")  # etcd CA, not the Kubernetes CA
    result = tls_exchange(server, etcd_client, server["ca_file"], server["ca_file"], "kubernetes")
    assert "reply" not in result and "certificate verify failed" in result["server_error"]


def test_a_client_without_a_certificate_is_refused(tls_cluster):
    server = tls_cluster.files("master01", "apiserver")
    result = tls_exchange(server, None, server["ca_file"], server["ca_file"], "kubernetes")
    assert "reply" not in result and "certificate" in result["server_error"]


def test_a_serving_only_certificate_is_refused_as_a_client_certificate(issued_cluster):
    server = issued_cluster.files("master01", "apiserver")
    result = tls_exchange(server, server, server["ca_file"], server["ca_file"], "kubernetes")
    assert "reply" not in result and "unsuitable certificate purpose" in result["server_error"]


def test_the_client_refuses_an_apiserver_name_that_is_not_in_its_sans(issued_cluster):
    server, admin = issued_cluster.files("master01", "apiserver"), issued_cluster.files("master01", "admin")
    result = tls_exchange(server, admin, server["ca_file"], admin["ca_file"], "evil.example")
    assert "reply" not in result and "Hostname mismatch" in result["client_error"]


def test_a_kubelet_serving_certificate_is_valid_only_for_its_own_node(issued_cluster):
    kubelet, apiserver_client = (
        issued_cluster.files("worker01", "kubelet"),
        issued_cluster.files("master01", "apiserver-kubelet-client"),
    )
    ok = tls_exchange(kubelet, apiserver_client, kubelet["ca_file"], kubelet["ca_file"], "10.240.0.21")
    assert ok == {"reply": "hello kube-apiserver-kubelet-client"}
    wrong = tls_exchange(kubelet, apiserver_client, kubelet["ca_file"], kubelet["ca_file"], "worker02")
    assert "Hostname mismatch" in wrong["client_error"]


# a real etcd --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def etcd(issued_cluster, tmp_path_factory):
    """Three etcd members (master01..03) on 127.0.0.1, each serving its own etcd-server certificate and talking to
    its peers with its own etcd-peer certificate, client and peer certificate authentication on."""
    if not os.path.exists(etcd_cluster.ETCD):
        pytest.skip(f"{etcd_cluster.ETCD} is not installed (Debian package etcd-server)")
    root = tmp_path_factory.mktemp("etcd")
    members = ("master01", "master02", "master03")
    ports = etcd_cluster.free_ports(2 * len(members))
    urls = {
        m: (f"https://127.0.0.1:{ports[2 * i]}", f"https://127.0.0.1:{ports[2 * i + 1]}") for i, m in enumerate(members)
    }
    initial = ",".join(f"{m}={urls[m][1]}" for m in members)
    processes = []
    try:
        for member in members:
            server, peer = issued_cluster.files(member, "etcd-server"), issued_cluster.files(member, "etcd-peer")
            client_url, peer_url = urls[member]
            flags = [
                f"--name={member}",
                f"--data-dir={root / member}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster={initial}",
                "--initial-cluster-state=new",
                "--initial-cluster-token=pki-test",
                "--client-cert-auth",
                f"--trusted-ca-file={server['ca_file']}",
                f"--cert-file={server['cert']}",
                f"--key-file={server['key']}",
                "--peer-client-cert-auth",
                f"--peer-trusted-ca-file={peer['ca_file']}",
                f"--peer-cert-file={peer['cert']}",
                f"--peer-key-file={peer['key']}",
            ]
            processes.append((etcd_cluster.start_etcd(flags, root / f"{member}.log"), root / f"{member}.log"))
        client = issued_cluster.files("master01", "apiserver-etcd-client")
        for (process, log), member in zip(processes, members, strict=True):
            etcd_cluster.wait_healthy(
                urls[member][0],
                str(client["ca_file"]),
                str(client["cert"]),
                str(client["key"]),
                process=process,
                log=log,
            )
        yield {m: urls[m][0] for m in members}
    finally:
        for process, _ in processes:
            etcd_cluster.stop_process(process)


def etcd_client(cluster, minion, identity):
    files = cluster.files(minion, identity)
    return {"verify": str(files["ca_file"]), "cert": (str(files["cert"]), str(files["key"])), "timeout": 5}


def b64(text):
    return base64.b64encode(text.encode()).decode()


def test_etcd_peers_formed_a_cluster_over_mutual_tls_with_their_peer_certificates(etcd, issued_cluster):
    answer = requests.post(
        f"{etcd['master02']}/v3/cluster/member/list",
        json={},
        **etcd_client(issued_cluster, "master01", "apiserver-etcd-client"),
    )
    assert answer.status_code == 200
    assert sorted(m["name"] for m in answer.json()["members"]) == ["master01", "master02", "master03"]


def test_the_apiserver_etcd_client_reads_and_writes_etcd(etcd, issued_cluster):
    client = etcd_client(issued_cluster, "master02", "apiserver-etcd-client")
    assert requests.get(f"{etcd['master01']}/version", **client).json()["etcdserver"].startswith("3.")
    put = requests.post(f"{etcd['master01']}/v3/kv/put", json={"key": b64("/pki-test"), "value": b64("ok")}, **client)
    assert put.status_code == 200
    got = requests.post(f"{etcd['master03']}/v3/kv/range", json={"key": b64("/pki-test")}, **client)
    assert got.status_code == 200 and base64.b64decode(got.json()["kvs"][0]["value"]) == b"ok"


def test_the_etcd_healthcheck_client_gets_health(etcd, issued_cluster):
    client = etcd_client(issued_cluster, "master03", "etcd-healthcheck-client")
    answer = requests.get(f"{etcd['master03']}/health", **client)
    assert answer.status_code == 200 and answer.json()["health"] == "true"


def test_etcd_refuses_a_client_without_a_certificate(etcd, issued_cluster):
    client = etcd_client(issued_cluster, "master01", "apiserver-etcd-client")
    del client["cert"]
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{etcd['master01']}/version", **client)


def test_etcd_refuses_a_client_certificate_from_the_kubernetes_ca(etcd, issued_cluster):
    client = etcd_client(issued_cluster, "master01", "admin")  # system:masters, but not from the etcd CA
    client["verify"] = str(issued_cluster.files("master01", "apiserver-etcd-client")["ca_file"])
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{etcd['master01']}/version", **client)
