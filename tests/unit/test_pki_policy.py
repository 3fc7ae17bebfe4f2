"""k8s_pki policy: who may hold which certificate, and the CA minion's signing and secret functions."""

import logging
import os
import re

import pytest
import salt.minion
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import peer, seal, x509
from tests.support.pki_fixtures import NODES, Cluster, cluster  # noqa: F401  (fixture)

CONTROL_PLANE = [
    "apiserver",
    "apiserver-kubelet-client",
    "apiserver-etcd-client",
    "front-proxy-client",
    "kube-controller-manager",
    "kube-scheduler",
]
ADMIN = ["admin", "super-admin"]  # the CA minion's only (Kubernetes >= 1.29: k8s:pki:super_admin)
ETCD = ["etcd-server", "etcd-peer", "etcd-healthcheck-client"]


@pytest.fixture
def policy(tmp_path):
    """Settings only (no CA): entitlements are a pure function of them."""
    c = Cluster(tmp_path, pki={"apiserver_extra_sans": ["k8s.lab.example", "192.0.2.10"]})
    return c, c.config("master01"), c.execution("master01")


def csr_for(cluster, minion, cn="ignored", o=(), dns=()):
    key = x509.generate_private_key()
    return key, x509.create_csr(key, cn, o, dns)


# entitlements -------------------------------------------------------------------------------------------------------
def test_a_worker_is_entitled_to_its_own_kubelet_and_kube_proxy_only(policy):
    _, config, exe = policy
    ents = exe.entitlements(config, "worker01")
    assert list(ents) == ["kubelet", "kube-proxy"]
    assert ents["kubelet"] == {
        "ca": "kubernetes-ca",
        "cn": "system:node:worker01",
        "o": ["system:nodes"],
        "dns": ["worker01", "worker01.lab.example"],
        "ips": ["10.240.0.21"],
        "usages": ["server", "client"],
    }
    assert ents["kube-proxy"] == {
        "ca": "kubernetes-ca",
        "cn": "system:kube-proxy",
        "o": ["system:node-proxier"],
        "dns": [],
        "ips": [],
        "usages": ["client"],
    }


def test_in_flannel_mode_every_node_gets_an_api_credential_for_flanneld_and_none_from_the_etcd_ca(tmp_path):
    c = Cluster(tmp_path, network_mode="flannel")
    exe = c.execution("master01")
    for minion in ("worker01", "master02"):
        ent = exe.entitlements(c.config(minion), minion)["flannel"]
        assert (ent["ca"], ent["cn"], ent["o"], ent["usages"]) == ("kubernetes-ca", "kubesalt:flannel", [], ["client"])
    worker = exe.entitlements(c.config("worker01"), "worker01")
    assert [i for i, e in worker.items() if e["ca"] == "etcd-ca"] == []


def test_only_etcd_members_and_masters_hold_a_certificate_etcd_accepts(tmp_path):
    """etcd gives any client certificate of its CA every key, /registry included: in either network mode only etcd
    members and masters may hold one."""
    for mode in ("routes", "flannel"):
        c = Cluster(tmp_path / mode, network_mode=mode)
        exe = c.execution("master01")
        for minion, node in NODES.items():
            etcd_ca = [i for i, e in exe.entitlements(c.config(minion), minion).items() if e["ca"] == "etcd-ca"]
            if not {"master", "etcd"} & set(node["roles"]):
                assert etcd_ca == [], (mode, minion, etcd_ca)


def test_a_master_that_is_an_etcd_member_gets_the_control_plane_its_node_and_its_etcd_identities(policy):
    _, config, exe = policy
    assert list(exe.entitlements(config, "master02")) == CONTROL_PLANE + ["kubelet", "kube-proxy"] + ETCD
    assert list(exe.entitlements(config, "master01")) == CONTROL_PLANE + ADMIN + ["kubelet", "kube-proxy"] + ETCD


def test_admin_credentials_follow_the_release_the_ca_minion_holds_them_all(tmp_path):
    old = Cluster(tmp_path / "old", pki={"super_admin": False})
    ents = old.execution("master01").entitlements(old.config("master01"), "master01")
    assert ents["admin"]["o"] == ["system:masters"] and "super-admin" not in ents
    new = Cluster(tmp_path / "new")
    ents = new.execution("master01").entitlements(new.config("master01"), "master01")
    assert ents["admin"]["o"] == ["kubesalt:cluster-admins"]
    assert (ents["super-admin"]["cn"], ents["super-admin"]["o"]) == ("kubernetes-super-admin", ["system:masters"])


def test_an_etcd_only_node_gets_only_its_etcd_identities(tmp_path):
    nodes = dict(NODES, etcd04={"roles": ["etcd"], "ip": "10.240.0.14"})
    c = Cluster(tmp_path, nodes=nodes)
    ents = c.execution("master01").entitlements(c.config("etcd04"), "etcd04")
    assert list(ents) == ETCD
    assert ents["etcd-peer"]["cn"] == "etcd04"
    assert ents["etcd-peer"]["dns"] == ["etcd04", "localhost"]
    assert ents["etcd-peer"]["ips"] == ["10.240.0.14", "127.0.0.1"]
    assert ents["etcd-server"]["usages"] == ["server", "client"]


def test_a_minion_outside_the_inventory_gets_nothing(policy):
    _, config, exe = policy
    assert exe.entitlements(config, "intruder") == {}


def test_apiserver_sans_cover_every_master_the_service_ip_cluster_names_loopback_and_extras(policy):
    _, config, exe = policy
    ent = exe.entitlements(config, "master01")["apiserver"]
    assert ent["cn"] == "kube-apiserver" and ent["usages"] == ["server"]
    assert set(ent["dns"]) == {
        "master01",
        "master01.lab.example",
        "master02",
        "master02.lab.example",
        "master03",
        "master03.lab.example",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "k8s.lab.example",
    }
    assert set(ent["ips"]) == {"10.240.0.11", "10.240.0.12", "10.240.0.13", "10.32.0.1", "127.0.0.1", "192.0.2.10"}


def test_control_plane_client_identities_have_the_documented_subjects(policy):
    _, config, exe = policy
    ents = exe.entitlements(config, "master01")
    subjects = {k: (v["ca"], v["cn"], v["o"], v["usages"]) for k, v in ents.items()}
    assert subjects["admin"] == ("kubernetes-ca", "kubernetes-admin", ["kubesalt:cluster-admins"], ["client"])
    assert subjects["super-admin"] == ("kubernetes-ca", "kubernetes-super-admin", ["system:masters"], ["client"])
    assert subjects["apiserver-kubelet-client"] == (
        "kubernetes-ca",
        "kube-apiserver-kubelet-client",
        ["kubesalt:apiserver-kubelet-client"],
        ["client"],
    )
    assert subjects["apiserver-etcd-client"] == ("etcd-ca", "kube-apiserver-etcd-client", [], ["client"])
    assert subjects["front-proxy-client"] == ("front-proxy-ca", "front-proxy-client", [], ["client"])
    assert subjects["etcd-healthcheck-client"] == ("etcd-ca", "kube-etcd-healthcheck-client", [], ["client"])
    for component in ("kube-controller-manager", "kube-scheduler"):
        assert subjects[component] == (
            "kubernetes-ca",
            f"system:{component}",
            [f"system:{component}"],
            ["server", "client"],
        )
        assert ents[component]["dns"] == ["master01", "master01.lab.example", "localhost"]
        assert ents[component]["ips"] == ["10.240.0.11", "127.0.0.1"]


def test_entitlements_come_from_the_pillar_inventory_not_from_grains(policy):
    cluster, config, _ = policy
    # A worker that claims the master role in its grains is still a worker.
    exe = cluster.execution("worker01")
    exe.__grains__ = {"roles": ["master", "etcd"], "role": "master", "id": "worker01"}
    assert list(exe.entitlements(config, "worker01")) == ["kubelet", "kube-proxy"]


# sign_remote --------------------------------------------------------------------------------------------------------
def test_a_worker_obtains_its_own_kubelet_certificate_through_sign_remote(cluster):
    ca = cluster.execution("master01")
    key, csr = csr_for(cluster, "worker01")
    reply = ca.sign_remote(csr, "kubelet", __pub_id="worker01")
    info = ca.certificate_info(reply["certificate"])
    assert info["subject"] == {"cn": "system:node:worker01", "o": ["system:nodes"]}
    assert x509.needs_renewal(reply["certificate"], {"ca_pem": reply["ca"], "key_pem": key}, 30) == []
    assert "PRIVATE KEY" not in reply["ca"] and set(reply) == {"certificate", "ca"}


@pytest.mark.parametrize(
    "identity",
    ["admin", "super-admin", "apiserver", "etcd-peer", "apiserver-etcd-client", "front-proxy-client"],
)
def test_a_worker_is_refused_control_plane_and_etcd_certificates(cluster, identity):
    _, csr = csr_for(cluster, "worker01")
    with pytest.raises(
        CommandExecutionError,
        match=f"minion 'worker01' is not entitled to the '{identity}' certificate .*'worker'.*"
        "may obtain: kubelet, kube-proxy",
    ):
        cluster.execution("master01").sign_remote(csr, identity, __pub_id="worker01")


def test_a_worker_cannot_obtain_another_nodes_kubelet_certificate(cluster):
    ca = cluster.execution("master01")
    _, csr = csr_for(cluster, "worker01", cn="system:node:worker02", o=["system:nodes"], dns=["worker02"])
    reply = ca.sign_remote(csr, "kubelet", __pub_id="worker01")
    info = ca.certificate_info(reply["certificate"])
    assert info["subject"]["cn"] == "system:node:worker01"
    assert info["dns"] == ["worker01", "worker01.lab.example"]
    with pytest.raises(CommandExecutionError, match="unknown certificate identity 'kubelet:worker02'"):
        ca.sign_remote(csr, "kubelet:worker02", __pub_id="worker01")


def test_a_worker_csr_asking_for_system_masters_gets_a_certificate_without_it(cluster, caplog):
    ca = cluster.execution("master01")
    _, csr = csr_for(cluster, "worker01", cn="kubernetes-admin", o=["system:masters"])
    with caplog.at_level(logging.WARNING):
        reply = ca.sign_remote(csr, "kube-proxy", __pub_id="worker01")
    assert ca.certificate_info(reply["certificate"])["subject"] == {
        "cn": "system:kube-proxy",
        "o": ["system:node-proxier"],
    }
    assert "system:masters" not in reply["certificate"]
    assert "minion 'worker01' asked for" in caplog.text and "system:masters" in caplog.text


def test_sign_remote_without_pub_id_is_refused(cluster):
    _, csr = csr_for(cluster, "worker01")
    with pytest.raises(CommandExecutionError, match=r"could not be identified \(no __pub_id\)"):
        cluster.execution("master01").sign_remote(csr, "kubelet")


def test_sign_remote_on_a_minion_that_is_not_the_ca_minion_is_refused(cluster):
    _, csr = csr_for(cluster, "worker01")
    with pytest.raises(CommandExecutionError, match="this minion \\('master02'\\) is not the CA minion.*'master01'"):
        cluster.execution("master02").sign_remote(csr, "kubelet", __pub_id="worker01")


def test_a_minion_outside_the_inventory_is_refused(cluster):
    _, csr = csr_for(cluster, "worker01")
    with pytest.raises(CommandExecutionError, match="minion 'intruder' is not in k8s:nodes"):
        cluster.execution("master01").sign_remote(csr, "kubelet", __pub_id="intruder")


def test_a_csr_that_is_not_a_csr_is_refused(cluster):
    with pytest.raises(CommandExecutionError, match="CSR from minion 'worker01' for 'kubelet': not a PEM"):
        cluster.execution("master01").sign_remote(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "kubelet",
            __pub_id="worker01",
        )


# sign_batch_remote --------------------------------------------------------------------------------------------------
def test_a_worker_obtains_all_its_certificates_in_one_batch(cluster, caplog):
    ca = cluster.execution("master01")
    (kubelet_key, kubelet_csr), (proxy_key, proxy_csr) = csr_for(cluster, "worker01"), csr_for(cluster, "worker01")
    with caplog.at_level(logging.INFO):
        reply = ca.sign_batch_remote({"kubelet": kubelet_csr, "kube-proxy": proxy_csr}, __pub_id="worker01")
    assert set(reply) == {"kubelet", "kube-proxy"}
    assert ca.certificate_info(reply["kubelet"]["certificate"])["subject"]["cn"] == "system:node:worker01"
    assert ca.certificate_info(reply["kube-proxy"]["certificate"])["subject"]["cn"] == "system:kube-proxy"
    for identity, key in (("kubelet", kubelet_key), ("kube-proxy", proxy_key)):
        assert (
            x509.needs_renewal(reply[identity]["certificate"], {"ca_pem": reply[identity]["ca"], "key_pem": key}, 30)
            == []
        )
    assert "PRIVATE KEY" not in str(reply)


def _issued_log(caplog):
    return [r.getMessage() for r in caplog.records if "issued" in r.getMessage()]


@pytest.mark.parametrize("other", ["admin", "apiserver", "etcd-peer", "kubelet:worker02"])
def test_a_batch_holding_an_identity_the_caller_may_not_have_signs_nothing(cluster, caplog, other):
    _, csr = csr_for(cluster, "worker01")
    with caplog.at_level(logging.INFO), pytest.raises(CommandExecutionError) as err:
        cluster.execution("master01").sign_batch_remote({"kubelet": csr, other: csr}, __pub_id="worker01")
    message = str(err.value)
    assert f"request for '{other}' refused" in message and "none of the 2 certificates" in message
    assert "minion 'worker01'" in message
    assert _issued_log(caplog) == []


def test_a_batch_issues_the_callers_own_kubelet_whatever_the_csrs_ask_for(cluster):
    ca = cluster.execution("master01")
    _, other = csr_for(cluster, "worker01", cn="system:node:worker02", o=["system:masters"], dns=["worker02"])
    reply = ca.sign_batch_remote({"kubelet": other, "kube-proxy": other}, __pub_id="worker01")
    assert ca.certificate_info(reply["kubelet"]["certificate"])["subject"] == {
        "cn": "system:node:worker01",
        "o": ["system:nodes"],
    }
    assert "system:masters" not in str(ca.certificate_info(reply["kube-proxy"]["certificate"]))


@pytest.mark.parametrize(
    "bad, why",
    [
        ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "not a PEM"),
        ("rsa-1024", "refusing to sign a weaker key"),
        (None, "must be strings"),
    ],
    ids=["garbage", "weak-key", "not-a-string"],
)
def test_one_bad_csr_fails_the_whole_batch_naming_it(cluster, caplog, bad, why):
    if bad == "rsa-1024":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        bad = x509.create_csr(weak.decode(), "system:kube-proxy")
    _, good = csr_for(cluster, "worker01")
    with caplog.at_level(logging.INFO), pytest.raises(CommandExecutionError) as err:
        cluster.execution("master01").sign_batch_remote({"kubelet": good, "kube-proxy": bad}, __pub_id="worker01")
    assert "request for 'kube-proxy' refused" in str(err.value) and why in str(err.value)
    assert _issued_log(caplog) == []


@pytest.mark.parametrize(
    "requests, kwargs, why",
    [
        ({}, {}, "expected a non-empty mapping"),
        ("kubelet", {}, "expected a non-empty mapping"),
        ({f"x{i}": "csr" for i in range(15)}, {}, "there are only 14 certificate identities"),
        ({"kubelet": "csr"}, {"identity": "admin"}, "unexpected argument(s) identity"),
    ],
    ids=["empty", "not-a-mapping", "too-many", "extra-argument"],
)
def test_a_malformed_batch_is_refused(cluster, requests, kwargs, why):
    with pytest.raises(SaltInvocationError, match=re.escape(why)):
        cluster.execution("master01").sign_batch_remote(requests, __pub_id="worker01", **kwargs)


def test_sign_batch_remote_needs_pub_id_and_the_ca_minion(cluster):
    _, csr = csr_for(cluster, "worker01")
    with pytest.raises(CommandExecutionError, match=r"no __pub_id"):
        cluster.execution("master01").sign_batch_remote({"kubelet": csr})
    with pytest.raises(CommandExecutionError, match="this minion \\('master02'\\) is not the CA minion"):
        cluster.execution("master02").sign_batch_remote({"kubelet": csr}, __pub_id="worker01")


def test_sign_local_signs_for_the_ca_minion_itself(cluster):
    ca = cluster.execution("master01")
    _, csr = csr_for(cluster, "master01")
    info = ca.certificate_info(ca.sign_local(csr, "super-admin")["certificate"])
    assert info["subject"] == {"cn": "kubernetes-super-admin", "o": ["system:masters"]}


def test_sign_local_cannot_be_reached_through_peer_publish(cluster):
    _, csr = csr_for(cluster, "worker01")
    with pytest.raises(CommandExecutionError, match="may not be called through peer publish .*'worker01'"):
        cluster.execution("master01").sign_local(csr, "admin", __pub_id="worker01")


# CA files on the CA minion ------------------------------------------------------------------------------------------
def test_signing_refuses_a_ca_dir_that_group_or_others_can_access(cluster):
    ca_dir = cluster.config("master01")["paths"]["ca_dir"]
    os.chmod(ca_dir, 0o750)
    _, csr = csr_for(cluster, "worker01")
    with pytest.raises(CommandExecutionError, match=f"CA directory {ca_dir} is mode 0750.*refusing"):
        cluster.execution("master01").sign_remote(csr, "kubelet", __pub_id="worker01")


def test_signing_refuses_a_ca_key_readable_by_others(cluster):
    key = cluster.layout("master01")["cas"]["kubernetes-ca"]["key"]
    os.chmod(key, 0o644)
    _, csr = csr_for(cluster, "worker01")
    with pytest.raises(CommandExecutionError, match=f"CA 'kubernetes-ca' private key {key} is mode 0644"):
        cluster.execution("master01").sign_remote(csr, "kubelet", __pub_id="worker01")


def test_signing_with_a_missing_ca_names_the_ca_and_its_file(cluster):
    cert = cluster.layout("master01")["cas"]["etcd-ca"]["cert"]
    os.unlink(cert)
    _, csr = csr_for(cluster, "master02")
    with pytest.raises(CommandExecutionError, match=f"CA 'etcd-ca' is missing on this minion: {cert} does not exist"):
        cluster.execution("master01").sign_remote(csr, "etcd-peer", __pub_id="master02")


# secrets ------------------------------------------------------------------------------------------------------------
def fetch(ca, name, requester):
    private, public = seal.keypair()
    reply = ca.fetch_secret_remote(name, public, __pub_id=requester)
    return reply, private


def test_a_master_fetches_the_service_account_key_sealed_to_its_one_time_key(cluster):
    ca = cluster.execution("master01")
    reply, private = fetch(ca, "service-account", "master02")
    assert set(reply) == {"sealed"} and "PRIVATE KEY" not in str(reply)
    secret = seal.unseal(reply["sealed"], private, seal.context("service-account", "master02"))
    assert x509.private_key_info(secret)["key_type"] == "ecdsa-p256"
    reply, private = fetch(ca, "encryption-config", "master03")
    config = seal.unseal(reply["sealed"], private, seal.context("encryption-config", "master03"))
    assert "kind: EncryptionConfiguration" in config and "secretbox" in config


def test_a_sealed_secret_opens_only_for_its_key_its_name_and_its_requester(cluster):
    ca = cluster.execution("master01")
    reply, private = fetch(ca, "service-account", "master02")
    other, _ = seal.keypair()
    for key, info in (
        (other, seal.context("service-account", "master02")),
        (private, seal.context("encryption-config", "master02")),
        (private, seal.context("service-account", "master03")),
    ):
        with pytest.raises(CommandExecutionError, match="does not decrypt"):
            seal.unseal(reply["sealed"], key, info)


def test_a_secret_is_never_handed_over_without_a_recipient_key(cluster):
    with pytest.raises(SaltInvocationError, match="sent no recipient key"):
        cluster.execution("master01").fetch_secret_remote("service-account", __pub_id="master02")


def test_a_worker_may_not_fetch_cluster_secrets(cluster):
    with pytest.raises(
        CommandExecutionError,
        match="minion 'worker01' may not fetch secret 'service-account': only nodes with the master",
    ):
        cluster.execution("master01").fetch_secret_remote("service-account", __pub_id="worker01")


def test_fetch_secret_remote_without_pub_id_or_for_an_unknown_secret_is_refused(cluster):
    ca = cluster.execution("master01")
    with pytest.raises(CommandExecutionError, match="no __pub_id"):
        ca.fetch_secret_remote("service-account")
    with pytest.raises(CommandExecutionError, match="unknown secret 'ca-key' requested by minion 'master02'"):
        ca.fetch_secret_remote("ca-key", __pub_id="master02")


def test_the_ca_refuses_a_csr_whose_key_is_weaker_than_the_key_type_asks(cluster):
    """k8s:pki:key_type ecdsa-p256 (128-bit strength): an RSA-2048 key (112 bits) is refused, RSA-3072 is not."""
    ca = cluster.execution("master01")
    weak = x509.create_csr(x509.generate_private_key("rsa-2048"), "x")
    with pytest.raises(CommandExecutionError, match="sent a rsa-2048 key for 'kubelet'.*ecdsa-p256.*128-bit"):
        ca.sign_remote(weak, "kubelet", __pub_id="worker01")
    strong = x509.create_csr(x509.generate_private_key("rsa-3072"), "x")
    assert ca.sign_remote(strong, "kubelet", __pub_id="worker01")["certificate"]


def padded_word_key():
    """A one-time key whose base64 is word characters and '=' only: the shape Salt reads as ``name=value``."""
    for _ in range(500):
        private, public = seal.keypair()
        if re.fullmatch(r"[A-Za-z]\w*=", public):
            return private, public
    raise AssertionError("no such key in 500 tries (each has a ~20% chance)")


def test_the_recipient_key_reaches_the_ca_minion_whatever_its_characters(cluster):
    """The request as the state builds it, unpacked by the target minion's own argument loader: before kubesalt
    sent the key as a named argument, one run in five lost it (it arrived as a keyword argument named after it)."""
    ca = cluster.execution("master01")
    private, public = padded_word_key()
    plain, _ = salt.minion.load_args_and_kwargs(ca.fetch_secret_remote, ["service-account", public])
    assert plain == ["service-account"], "Salt no longer parses such a string as name=value?"
    args, kwargs = salt.minion.load_args_and_kwargs(
        ca.fetch_secret_remote, ["service-account", peer.named(recipient=public)]
    )
    reply = ca.fetch_secret_remote(*args, **kwargs, __pub_id="master02")
    secret = seal.unseal(reply["sealed"], private, seal.context("service-account", "master02"))
    assert "PRIVATE KEY" in secret


def test_a_secret_request_with_unknown_named_arguments_is_refused(cluster):
    with pytest.raises(SaltInvocationError, match="unexpected argument"):
        cluster.execution("master01").fetch_secret_remote("service-account", "k", mode="plain", __pub_id="master02")
