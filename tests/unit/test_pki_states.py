"""k8s_pki states against the real execution module: create, idempotence, test=True, renewal, refusals."""

import datetime
import os
import pathlib
import stat

import pytest

from kubesalt import x509
from tests.support.pki_fixtures import RSA_IDENTITIES, Cluster, cluster, rsa_issued_cluster, tree  # noqa: F401

DAY = datetime.timedelta(days=1)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def ca_files(cluster, ca="kubernetes-ca"):
    spec = cluster.layout("master01")["cas"][ca]
    return pathlib.Path(spec["cert"]), pathlib.Path(spec["key"])


def plant(cluster, minion, identity, now=None, days=365, ca=None, **subject):
    """Write a certificate for ``identity``'s existing key, signed by the real CA (or ``ca``), with overrides."""
    exe = cluster.execution(minion)
    files = cluster.files(minion, identity)
    ent = dict(exe.entitlements(cluster.config(minion), minion)[identity], **subject)
    if ca is None:
        cert, key = ca_files(cluster, ent["ca"])
        ca = {"cert": cert.read_text(), "key": key.read_text()}
    pem = x509.sign_certificate(
        ca["cert"],
        ca["key"],
        x509.create_csr(files["key"].read_text(), "x"),
        ent["cn"],
        ent["o"],
        ent["dns"],
        ent["ips"],
        ent["usages"],
        days=days,
        now=now,
    )
    files["cert"].write_text(pem)
    return pem


def serial(cluster, minion, identity):
    return x509.certificate_info(cluster.files(minion, identity)["cert"].read_text())["serial"]


# ca_present ---------------------------------------------------------------------------------------------------------
def test_ca_present_creates_a_0600_key_in_a_0700_dir_and_a_0600_certificate_then_changes_nothing(tmp_path):
    c = Cluster(tmp_path)
    states = c.states("master01")
    cert, key = ca_files(c)
    ret = states.ca_present(str(cert), str(key), "kubernetes")
    assert ret["result"] is True and set(ret["changes"]) == {"key", "certificate"}
    assert (mode(key.parent), mode(key), mode(cert)) == (0o700, 0o600, 0o600)
    assert mode(key.parent.parent) == 0o755  # pki_dir itself is not private
    assert x509.certificate_info(cert.read_text())["is_ca"] is True
    before = tree(tmp_path)
    again = states.ca_present(str(cert), str(key), "kubernetes")
    assert again["result"] is True and again["changes"] == {}
    assert tree(tmp_path) == before


def test_ca_present_with_test_true_reports_and_writes_nothing(tmp_path):
    c = Cluster(tmp_path)
    cert, key = ca_files(c)
    before = tree(tmp_path)
    ret = c.states("master01", test=True).ca_present(str(cert), str(key), "kubernetes")
    assert ret["result"] is None and set(ret["changes"]) == {"key", "certificate"}
    assert tree(tmp_path) == before


def test_ca_present_refuses_a_ca_dir_that_others_can_read_and_writes_nothing(tmp_path):
    c = Cluster(tmp_path)
    cert, key = ca_files(c)
    key.parent.mkdir(parents=True, mode=0o755)
    os.chmod(key.parent, 0o755)
    ret = c.states("master01").ca_present(str(cert), str(key), "kubernetes")
    assert ret["result"] is False and f"CA directory {key.parent} is mode 0755" in ret["comment"]
    assert list(key.parent.iterdir()) == []


def test_ca_present_refuses_to_replace_a_ca_whose_key_is_missing(cluster):
    cert, key = ca_files(cluster)
    key.unlink()
    before = cert.read_text()
    ret = cluster.states("master01").ca_present(str(cert), str(key), "kubernetes")
    assert ret["result"] is False and "exists but its key" in ret["comment"] and "refusing" in ret["comment"]
    assert cert.read_text() == before and not key.exists()


def test_ca_present_renews_a_due_ca_with_the_same_key_so_issued_certificates_keep_verifying(cluster):
    cert, key = ca_files(cluster)
    cluster.issue("worker01", "kubelet")
    cert.write_text(x509.create_ca(key.read_text(), "kubernetes", days=20))  # 20 days left < renew_days 30
    ret = cluster.states("master01").ca_present(str(cert), str(key), "kubernetes")
    assert ret["result"] is True and "less than renew_days" in ret["changes"]["certificate"]["renew"][0]
    assert x509.certificate_info(cert.read_text())["days_left"] >= 3649
    kubelet = cluster.files("worker01", "kubelet")["cert"].read_text()
    assert x509.needs_renewal(kubelet, {"ca_pem": cert.read_text()}, 30) == []


def test_ca_present_keeps_an_existing_key_of_another_type_and_says_so(cluster):
    cert, key = ca_files(cluster)
    ret = cluster.states("master01").ca_present(str(cert), str(key), "kubernetes", key_type="rsa-2048")
    assert ret["result"] is True and ret["changes"] == {}
    assert "CA keys are never replaced" in ret["comment"]


def test_ca_present_never_renames_an_existing_ca(cluster):
    cert, key = ca_files(cluster)
    before = cert.read_text()
    ret = cluster.states("master01").ca_present(str(cert), str(key), "kubernetes-renamed")
    assert ret["result"] is True and ret["changes"] == {}
    assert "named 'kubernetes', not 'kubernetes-renamed': a CA is never renamed" in ret["comment"]
    assert cert.read_text() == before


# private_key_present ------------------------------------------------------------------------------------------------
def test_private_key_present_creates_then_keeps_and_fixes_the_mode(tmp_path):
    states = Cluster(tmp_path).states("master01")
    path = tmp_path / "keys" / "sa.key"
    ret = states.private_key_present(str(path), key_type="rsa-2048")
    assert ret["result"] is True and ret["changes"] == {"key": "new rsa-2048 key"} and mode(path) == 0o600
    content = path.read_text()
    assert states.private_key_present(str(path), key_type="rsa-2048")["changes"] == {}
    os.chmod(path, 0o644)
    ret = states.private_key_present(str(path), key_type="rsa-2048")
    assert ret["changes"] == {"mode": {str(path): {"old": "0644", "new": "0600"}}}
    assert mode(path) == 0o600 and path.read_text() == content


def test_private_key_present_with_test_true_writes_nothing(tmp_path):
    states = Cluster(tmp_path).states("master01", test=True)
    ret = states.private_key_present(str(tmp_path / "k.key"))
    assert ret["result"] is None and ret["changes"] and list(tmp_path.iterdir()) == []


def test_public_key_present_follows_the_private_key_and_is_readable_by_cryptography(tmp_path):
    from cryptography.hazmat.primitives import serialization

    states = Cluster(tmp_path).states("master01")
    key, pub = tmp_path / "sa.key", tmp_path / "sa.pub"
    states.private_key_present(str(key))
    ret = states.public_key_present(str(pub), key=str(key))
    assert ret["result"] is True and ret["changes"] == {"public_key": f"{pub} from {key}"}
    loaded = serialization.load_pem_public_key(pub.read_bytes())
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert loaded.public_numbers() == private.public_key().public_numbers()
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----") and mode(pub) == 0o600
    assert states.public_key_present(str(pub), key=str(key))["changes"] == {}
    key.unlink()
    states.private_key_present(str(key))
    assert states.public_key_present(str(pub), key=str(key))["changes"], "a new private key rewrites the public key"


def test_public_key_present_test_mode_and_missing_key(tmp_path):
    states = Cluster(tmp_path).states("master01", test=True)
    ret = states.public_key_present(str(tmp_path / "sa.pub"), key=str(tmp_path / "sa.key"))
    assert ret["result"] is None and ret["changes"] and list(tmp_path.iterdir()) == []
    real = Cluster(tmp_path).states("master01")
    ret = real.public_key_present(str(tmp_path / "sa.pub"), key=str(tmp_path / "nope.key"))
    assert ret["result"] is False and "nope.key does not exist" in ret["comment"]
    assert not (tmp_path / "sa.pub").exists()


def test_private_key_present_refuses_a_file_that_is_not_a_key_and_leaves_it(tmp_path):
    path = tmp_path / "k.key"
    path.write_text("not a key\n")
    ret = Cluster(tmp_path).states("master01").private_key_present(str(path))
    assert ret["result"] is False and f"key {path}: " in ret["comment"] and "not a PEM private key" in ret["comment"]
    assert path.read_text() == "not a key\n"


# certificate_managed ------------------------------------------------------------------------------------------------
def test_a_worker_gets_its_kubelet_certificate_through_peer_publish_then_nothing_changes(cluster):
    ret = cluster.issue("worker01", "kubelet")
    assert ret["result"] is True, ret
    assert ret["changes"]["key"] == "generated" and "ca_file" in ret["changes"]
    assert ("worker01", "master01", "k8s_pki.sign_batch_remote") in cluster.published
    files = cluster.files("worker01", "kubelet")
    assert (mode(files["key"]), mode(files["cert"]), mode(files["ca_file"])) == (0o600, 0o600, 0o600)
    assert x509.certificate_info(files["cert"].read_text())["subject"]["cn"] == "system:node:worker01"
    before = tree(cluster.root / "worker01")
    cluster.published.clear()
    again = cluster.issue("worker01", "kubelet")
    assert again["result"] is True and again["changes"] == {}
    assert tree(cluster.root / "worker01") == before and cluster.published == []


def test_a_node_sends_all_its_due_certificates_in_one_request_each_state_writes_its_own(cluster):
    kubelet = cluster.issue("worker01", "kubelet")
    assert cluster.published == [("worker01", "master01", "k8s_pki.sign_batch_remote")]
    assert set(kubelet["changes"]) == {"key", "certificate", "ca_file"}
    assert not cluster.files("worker01", "kube-proxy")["cert"].exists()  # written by its own state only
    proxy = cluster.issue("worker01", "kube-proxy")
    assert proxy["result"] is True and proxy["changes"]["key"] == "generated", proxy
    assert cluster.published == [("worker01", "master01", "k8s_pki.sign_batch_remote")]  # no second request
    files = cluster.files("worker01", "kube-proxy")
    info = x509.certificate_info(files["cert"].read_text())
    assert info["subject"]["cn"] == "system:kube-proxy"
    assert (
        x509.needs_renewal(
            files["cert"].read_text(), {"ca_pem": files["ca_file"].read_text(), "key_pem": files["key"].read_text()}, 30
        )
        == []
    )
    assert "PRIVATE KEY" not in str(cluster.states("worker01").__context__.get("k8s_pki.issued_for_later"))


def test_a_held_reply_whose_key_changed_meanwhile_is_not_used(cluster):
    cluster.issue("worker01", "kubelet")  # holds kube-proxy's certificate for a key made then
    files = cluster.files("worker01", "kube-proxy")
    files["key"].parent.mkdir(parents=True, exist_ok=True)
    other_key = x509.generate_private_key()
    files["key"].write_text(other_key)
    os.chmod(files["key"], 0o600)
    proxy = cluster.issue("worker01", "kube-proxy")
    assert proxy["result"] is True and "key" not in proxy["changes"], proxy
    assert cluster.published == [("worker01", "master01", "k8s_pki.sign_batch_remote")] * 2
    cert = files["cert"].read_text()
    assert x509.needs_renewal(cert, {"ca_pem": files["ca_file"].read_text(), "key_pem": other_key}, 30) == []


def test_a_batch_refused_by_the_ca_fails_the_state_and_writes_nothing(cluster):
    node_config, files = cluster.config("worker01"), cluster.files("worker01", "kubelet")
    cluster.pillar["nodes"] = {k: v for k, v in cluster.pillar["nodes"].items() if k != "worker01"}  # the CA's view
    ret = cluster.states("worker01").certificate_managed(
        str(files["cert"]), str(files["key"]), "kubelet", config=node_config, ca_file=str(files["ca_file"])
    )
    assert ret["result"] is False
    assert "k8s_pki.sign_batch_remote: request for 'kube-proxy' refused" in ret["comment"]
    assert "none of the 2 certificates" in ret["comment"] and "minion 'worker01' is not in k8s:nodes" in ret["comment"]
    assert [p for p in cluster.root.glob("worker01/**/*") if p.suffix in (".crt", ".key")] == []


def test_the_ca_minion_signs_its_own_certificates_locally(cluster):
    ret = cluster.issue("master01", "super-admin")
    assert ret["result"] is True and cluster.published == []
    cert = cluster.files("master01", "super-admin")["cert"].read_text()
    assert x509.certificate_info(cert)["subject"]["o"] == ["system:masters"]


def test_certificate_managed_with_test_true_returns_none_and_writes_nothing(cluster):
    before = tree(cluster.root)
    ret = cluster.issue("worker01", "kubelet", test=True)
    assert ret["result"] is None and ret["changes"]["key"] == "generated"
    assert "no certificate" in ret["changes"]["certificate"]["reasons"]
    assert tree(cluster.root) == before and cluster.published == []


def test_a_valid_certificate_is_left_untouched(cluster):
    cluster.issue("worker01", "kubelet")
    before = tree(cluster.root / "worker01")
    ret = cluster.issue("worker01", "kubelet")
    assert ret["changes"] == {} and "is valid until" in ret["comment"]
    assert tree(cluster.root / "worker01") == before


@pytest.mark.parametrize(
    "case", ["expired", "near-expiry", "past-two-thirds", "wrong-ca", "san-mismatch", "o-mismatch"]
)
def test_a_certificate_that_is_due_or_wrong_is_reissued_with_the_same_key(cluster, case):
    cluster.issue("worker01", "kubelet")
    now = datetime.datetime.now(datetime.timezone.utc)
    if case == "expired":
        plant(cluster, "worker01", "kubelet", now=now - 400 * DAY)
    elif case == "near-expiry":
        plant(cluster, "worker01", "kubelet", now=now - 350 * DAY)
    elif case == "past-two-thirds":
        plant(cluster, "worker01", "kubelet", now=now - 70 * DAY, days=100)
    elif case == "wrong-ca":
        key = x509.generate_private_key()
        plant(cluster, "worker01", "kubelet", ca={"key": key, "cert": x509.create_ca(key, "kubernetes")})
    elif case == "san-mismatch":
        plant(cluster, "worker01", "kubelet", dns=["worker01"], ips=["10.240.0.99"])
    elif case == "o-mismatch":
        plant(cluster, "worker01", "kubelet", o=["system:masters"])
    files = cluster.files("worker01", "kubelet")
    key_before, old_serial = files["key"].read_text(), serial(cluster, "worker01", "kubelet")
    test_ret = cluster.issue("worker01", "kubelet", test=True)
    assert test_ret["result"] is None and test_ret["changes"]["certificate"]["reasons"]
    assert serial(cluster, "worker01", "kubelet") == old_serial
    ret = cluster.issue("worker01", "kubelet")
    assert ret["result"] is True and ret["changes"]["certificate"]["serial"] != old_serial
    assert "key" not in ret["changes"] and files["key"].read_text() == key_before
    assert cluster.issue("worker01", "kubelet")["changes"] == {}


def test_a_node_renamed_in_the_pillar_gets_its_sans_updated(cluster):
    cluster.issue("worker02", "kubelet")
    cluster.pillar["nodes"] = dict(
        cluster.pillar["nodes"], worker02={"roles": ["worker"], "ip": "10.240.0.22", "names": ["w2.lab.example"]}
    )
    ret = cluster.issue("worker02", "kubelet")
    assert any(r.startswith("DNS SANs are") for r in ret["changes"]["certificate"]["reasons"])
    cert = cluster.files("worker02", "kubelet")["cert"].read_text()
    assert x509.certificate_info(cert)["dns"] == ["worker02", "w2.lab.example"]


def test_a_key_of_another_type_than_configured_is_replaced_and_the_certificate_reissued(cluster):
    cluster.issue("worker01", "kube-proxy")
    cluster.pillar["pki"]["key_type"] = "rsa-2048"
    ret = cluster.issue("worker01", "kube-proxy")
    assert ret["result"] is True and ret["changes"]["key"].startswith("replaced: ecdsa-p256 -> rsa-2048")
    files = cluster.files("worker01", "kube-proxy")
    assert x509.private_key_info(files["key"].read_text())["key_type"] == "rsa-2048"
    assert x509.needs_renewal(files["cert"].read_text(), {"key_pem": files["key"].read_text()}, 30) == []
    assert cluster.issue("worker01", "kube-proxy")["changes"] == {}


def test_rotate_keys_makes_a_new_key_on_renewal(cluster):
    cluster.pillar["pki"]["rotate_keys"] = True
    cluster.issue("worker01", "kubelet")
    files = cluster.files("worker01", "kubelet")
    old_key = files["key"].read_text()
    plant(cluster, "worker01", "kubelet", now=datetime.datetime.now(datetime.timezone.utc) - 400 * DAY)
    ret = cluster.issue("worker01", "kubelet")
    assert ret["changes"]["key"].startswith("rotated") and files["key"].read_text() != old_key


def test_only_the_mode_is_fixed_when_only_the_mode_is_wrong(cluster):
    cluster.issue("worker01", "kubelet")
    files = cluster.files("worker01", "kubelet")
    old_serial = serial(cluster, "worker01", "kubelet")
    os.chmod(files["key"], 0o644)
    os.chmod(files["cert"], 0o644)
    ret = cluster.issue("worker01", "kubelet")
    assert set(ret["changes"]) == {"mode"} and serial(cluster, "worker01", "kubelet") == old_serial
    assert (mode(files["key"]), mode(files["cert"])) == (0o600, 0o600)


def test_a_reissue_also_fixes_the_mode_of_an_unchanged_ca_bundle(cluster):
    cluster.issue("worker01", "kubelet")
    files = cluster.files("worker01", "kubelet")
    os.chmod(files["ca_file"], 0o644)
    plant(cluster, "worker01", "kubelet", now=datetime.datetime.now(datetime.timezone.utc) - 400 * DAY)
    ret = cluster.issue("worker01", "kubelet")
    assert ret["result"] is True and str(files["ca_file"]) in ret["changes"]["mode"]
    assert mode(files["ca_file"]) == 0o600 and cluster.issue("worker01", "kubelet")["changes"] == {}


def test_a_worker_asking_for_the_admin_certificate_fails_and_writes_nothing(cluster):
    before = tree(cluster.root)
    ret = cluster.issue("worker01", "admin")
    assert ret["result"] is False
    assert "minion 'worker01' is not entitled to the 'admin' certificate" in ret["comment"]
    assert tree(cluster.root) == before and cluster.published == []


def test_the_ca_refusal_reaches_the_node_and_nothing_is_written(cluster):
    # Bypass the node-side check (a node whose pillar says it is a master) to show the CA's own refusal.
    nodes = dict(cluster.pillar["nodes"])
    node_view = dict(nodes, worker01={"roles": ["worker", "master"], "ip": "10.240.0.21"})
    states = cluster.states("worker01")
    config = dict(cluster.config("worker01"), nodes=node_view)
    config["cluster"] = dict(config["cluster"], masters=config["cluster"]["masters"] + ["worker01"])
    files = cluster.files("worker01", "apiserver")
    ret = states.certificate_managed(str(files["cert"]), str(files["key"]), "apiserver", config=config)
    assert ret["result"] is False
    assert (
        "CA minion 'master01' refused k8s_pki.sign_batch_remote for minion 'worker01': ERROR: "
        "k8s_pki.sign_batch_remote: request for 'apiserver' refused" in ret["comment"]
    )
    assert "minion 'worker01' is not entitled to the 'apiserver' certificate" in ret["comment"]
    assert not files["cert"].exists() and not files["key"].exists()


def test_an_unknown_identity_fails_naming_it(cluster):
    ret = cluster.states("worker01").certificate_managed(
        "/nonexistent/x.crt", "/nonexistent/x.key", "root", config=cluster.config("worker01")
    )
    assert ret["result"] is False and "unknown certificate identity 'root'" in ret["comment"]


@pytest.mark.parametrize(
    "fault, message",
    [("peer", "peer configuration does not allow minion 'worker01'"), ("down", "no reply from CA minion 'master01'")],
)
def test_no_reply_from_the_ca_minion_fails_clearly_and_writes_nothing(cluster, fault, message):
    if fault == "peer":
        cluster.peer_allowed = r"master\d+"
    else:
        cluster.ca_down = True
    ret = cluster.issue("worker01", "kubelet")
    assert ret["result"] is False and message in ret["comment"] and "k8s_pki.sign_batch_remote" in ret["comment"]
    assert not cluster.files("worker01", "kubelet")["key"].exists()


def test_an_unreadable_key_fails_naming_it_and_is_left_alone(cluster):
    files = cluster.files("worker01", "kubelet")
    files["key"].parent.mkdir(parents=True)
    files["key"].write_text("garbage")
    ret = cluster.issue("worker01", "kubelet")
    assert ret["result"] is False and f"key {files['key']}" in ret["comment"]
    assert files["key"].read_text() == "garbage" and not files["cert"].exists()


def test_a_ca_reply_that_differs_from_the_nodes_view_is_not_written(cluster):
    # The node's pillar view lists an extra name the CA does not know: the CA issues by its own view.
    node_view = dict(
        cluster.pillar["nodes"], worker01={"roles": ["worker"], "ip": "10.240.0.21", "names": ["stale.lab.example"]}
    )
    config = dict(cluster.config("worker01"), nodes=node_view)
    files = cluster.files("worker01", "kubelet")
    ret = cluster.states("worker01").certificate_managed(
        str(files["cert"]), str(files["key"]), "kubelet", config=config
    )
    assert ret["result"] is False and "refresh_pillar" in ret["comment"] and "DNS SANs are" in ret["comment"]
    assert not files["cert"].exists()


# secret_present -----------------------------------------------------------------------------------------------------
def test_a_master_gets_the_service_account_key_from_the_ca_minion_then_nothing_changes(cluster):
    spec = cluster.layout("master02")["secrets"]["service-account"]
    states = cluster.states("master02")
    ret = states.secret_present(spec["path"], "service-account", config=cluster.config("master02"))
    assert ret["result"] is True and "content not shown" in ret["changes"]["secret"]
    source = pathlib.Path(cluster.layout("master01")["secrets"]["service-account"]["source"])
    assert pathlib.Path(spec["path"]).read_text() == source.read_text() and mode(spec["path"]) == 0o600
    assert "PRIVATE KEY" not in str(ret)
    assert states.secret_present(spec["path"], "service-account", config=cluster.config("master02"))["changes"] == {}


def test_the_ca_minion_copies_its_own_secret_and_never_regenerates_it(cluster):
    source = pathlib.Path(cluster.layout("master01")["secrets"]["encryption-config"]["source"])
    original = source.read_text()
    path = cluster.layout("master01")["secrets"]["encryption-config"]["path"]
    states = cluster.states("master01")
    assert states.secret_present(path, "encryption-config", config=cluster.config("master01"))["result"] is True
    assert states.secret_present(str(source), "encryption-config", config=cluster.config("master01"))["changes"] == {}
    assert pathlib.Path(path).read_text() == source.read_text() == original


def test_a_worker_cannot_obtain_the_service_account_key(cluster):
    path = cluster.layout("worker01")["secrets"]["service-account"]["path"]
    ret = cluster.states("worker01").secret_present(path, "service-account", config=cluster.config("worker01"))
    assert ret["result"] is False and "only nodes with the master role" in ret["comment"]
    assert not pathlib.Path(path).exists()


def test_secret_present_with_test_true_writes_nothing(tmp_path):
    c = Cluster(tmp_path)
    spec = c.layout("master01")["secrets"]["service-account"]
    ret = c.states("master01", test=True).secret_present(spec["source"], "service-account", config=c.config("master01"))
    assert ret["result"] is None and "source" in ret["changes"] and list(tmp_path.iterdir()) == []


# RSA ----------------------------------------------------------------------------------------------------------------
def test_an_rsa_2048_cluster_issues_rsa_keys_and_certificates_and_is_idempotent(rsa_issued_cluster):
    c = rsa_issued_cluster
    issued = [("master01", i) for i in RSA_IDENTITIES if i != "kubelet"] + [("worker01", "kubelet")]
    for minion, identity in issued:
        files = c.read(minion, identity)
        assert x509.private_key_info(files["key"])["key_type"] == "rsa-2048"
        assert x509.needs_renewal(files["cert"], {"ca_pem": files["ca_file"], "key_pem": files["key"]}, 30) == []
    assert x509.certificate_info(ca_files(c)[0].read_text())["key_type"] == "rsa-2048"
    before = tree(c.root)
    assert all(c.issue(m, i)["changes"] == {} for m, i in issued)
    assert tree(c.root) == before


# status -------------------------------------------------------------------------------------------------------------
def test_status_reports_every_certificate_on_the_node_with_ok_renew_or_expired(cluster):
    cluster.issue("worker01", "kubelet")
    cluster.issue("worker01", "kube-proxy")
    now = datetime.datetime.now(datetime.timezone.utc)
    plant(cluster, "worker01", "kubelet", now=now - 350 * DAY)
    plant(cluster, "worker01", "kube-proxy", now=now - 400 * DAY)
    report = cluster.execution("worker01").status()
    files = {i: str(cluster.files("worker01", i)["cert"]) for i in ("kubelet", "kube-proxy")}
    ca_file = str(cluster.files("worker01", "kubelet")["ca_file"])
    assert sorted(report) == sorted([files["kubelet"], files["kube-proxy"], ca_file])
    kubelet = report[files["kubelet"]]
    assert (kubelet["identity"], kubelet["state"]) == ("kubelet", "renew")
    assert kubelet["subject"] == {"cn": "system:node:worker01", "o": ["system:nodes"]}
    assert kubelet["issuer"]["cn"] == "kubernetes" and kubelet["ips"] == ["10.240.0.21"]
    assert 0 <= kubelet["days_left"] < 30 and kubelet["not_after"].endswith("Z")
    assert report[files["kube-proxy"]]["state"] == "expired" and report[files["kube-proxy"]]["days_left"] < 0
    assert report[ca_file]["state"] == "OK"
    cluster.issue("worker01", "kubelet")
    cluster.issue("worker01", "kube-proxy")
    assert {v["state"] for v in cluster.execution("worker01").status().values()} == {"OK"}
