"""k8s_pki pure core: keys, CAs, CSRs, signing, certificate_info, needs_renewal. Real crypto throughout."""

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import x509 as core

DAY = datetime.timedelta(days=1)


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def cert(pem):
    return x509.load_pem_x509_certificate(pem.encode())


def ext(certificate, cls):
    return certificate.extensions.get_extension_for_class(cls)


@pytest.fixture(scope="module")
def ca():
    key = core.generate_private_key()
    return {"key": key, "cert": core.create_ca(key, "kubernetes")}


@pytest.fixture(scope="module")
def leaf_key():
    return core.generate_private_key()


def issue(ca, key, **kwargs):
    args = {
        "common_name": "system:node:worker01",
        "organizations": ["system:nodes"],
        "dns": ["worker01"],
        "ips": ["10.240.0.21"],
        "usages": ["server", "client"],
    }
    args.update(kwargs)
    return core.sign_certificate(ca["cert"], ca["key"], core.create_csr(key, "ignored"), **args)


# keys ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key_type", ["ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096"])
def test_generate_private_key_makes_unencrypted_pkcs8_of_the_requested_type(key_type):
    pem = core.generate_private_key(key_type)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, not "EC PRIVATE KEY"/"RSA PRIVATE KEY"
    assert core.private_key_info(pem)["key_type"] == key_type


def test_generate_private_key_defaults_to_ecdsa_p256():
    assert core.private_key_info(core.generate_private_key())["key_type"] == "ecdsa-p256"


def test_generate_private_key_rejects_an_unknown_type_naming_it():
    with pytest.raises(SaltInvocationError, match="'dsa-1024' is not supported; use one of ecdsa-p256"):
        core.generate_private_key("dsa-1024")


def test_a_file_that_is_not_a_key_is_reported_as_such():
    with pytest.raises(CommandExecutionError, match="not a PEM private key"):
        core.private_key_info("-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")


# CA -----------------------------------------------------------------------------------------------------------------
def test_create_ca_is_a_self_signed_ca_with_critical_constraints_and_key_usage(ca):
    c = cert(ca["cert"])
    bc = ext(c, x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ext(c, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    assert ext(c, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(c.public_key())
    assert c.subject == c.issuer and c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubernetes"
    c.verify_directly_issued_by(c)


def test_create_ca_lasts_3650_days_from_five_minutes_ago_by_default(ca):
    c = cert(ca["cert"])
    assert c.not_valid_after_utc - c.not_valid_before_utc == datetime.timedelta(days=3650, minutes=5)
    assert abs((now() - c.not_valid_before_utc) - datetime.timedelta(minutes=5)) < datetime.timedelta(seconds=30)


def test_create_ca_rejects_a_non_positive_lifetime():
    with pytest.raises(SaltInvocationError, match="days: '0' must be a positive number of days"):
        core.create_ca(core.generate_private_key(), "x", days=0)


def test_a_ca_re_signed_with_the_same_key_still_verifies_what_it_issued(ca, leaf_key):
    leaf = cert(issue(ca, leaf_key))
    renewed = cert(core.create_ca(ca["key"], "kubernetes", days=7300))
    leaf.verify_directly_issued_by(renewed)
    assert renewed.serial_number != cert(ca["cert"]).serial_number


# CSR ----------------------------------------------------------------------------------------------------------------
def test_create_csr_carries_subject_and_sans_and_is_signed_by_its_key(leaf_key):
    csr = x509.load_pem_x509_csr(
        core.create_csr(leaf_key, "kube-apiserver", ["a", "b"], ["kubernetes"], ["10.32.0.1"]).encode()
    )
    assert csr.is_signature_valid
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["a", "b"]
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["kubernetes"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.32.0.1"]


@pytest.mark.parametrize(
    "dns, ips, bad",
    [
        (["under_score.example"], [], "under_score.example"),
        (["-lead.example"], [], "-lead.example"),
        ([], ["10.0.0.300"], "10.0.0.300"),
        ([], ["kubernetes"], "kubernetes"),
    ],
)
def test_malformed_san_is_refused_naming_it(leaf_key, dns, ips, bad):
    with pytest.raises(SaltInvocationError, match=f"malformed .* SAN '{bad}'"):
        core.create_csr(leaf_key, "x", dns=dns, ips=ips)


# signing ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key_type", ["ecdsa-p256", "rsa-2048"])
def test_sign_certificate_sets_usages_key_usage_sans_and_key_identifiers(ca, key_type):
    key = core.generate_private_key(key_type)
    c = cert(issue(ca, key))
    c.verify_directly_issued_by(cert(ca["cert"]))
    assert not ext(c, x509.BasicConstraints).value.ca and ext(c, x509.BasicConstraints).critical
    ku = ext(c, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert ku.value.key_encipherment is (key_type == "rsa-2048")  # RSA key transport only
    assert set(ext(c, x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    assert (
        ext(c, x509.AuthorityKeyIdentifier).value.key_identifier
        == ext(cert(ca["cert"]), x509.SubjectKeyIdentifier).value.digest
    )
    assert ext(c, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(c.public_key())
    assert isinstance(c.public_key(), ec.EllipticCurvePublicKey if key_type == "ecdsa-p256" else rsa.RSAPublicKey)
    info = core.certificate_info(issue(ca, key))
    assert (info["dns"], info["ips"]) == (["worker01"], ["10.240.0.21"])


def test_sign_certificate_client_only_has_only_client_auth(ca, leaf_key):
    c = cert(issue(ca, leaf_key, usages=["client"], dns=[], ips=[]))
    assert list(ext(c, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        ext(c, x509.SubjectAlternativeName)


def test_sign_certificate_uses_random_serials_and_backdates_five_minutes(ca, leaf_key):
    a, b = cert(issue(ca, leaf_key)), cert(issue(ca, leaf_key))
    assert a.serial_number != b.serial_number and a.serial_number.bit_length() > 64
    assert a.not_valid_after_utc - a.not_valid_before_utc == datetime.timedelta(days=365, minutes=5)


def test_sign_certificate_takes_the_subject_from_its_arguments_not_from_the_csr(ca, leaf_key):
    csr = core.create_csr(leaf_key, "kubernetes-admin", ["system:masters"], ["evil.example"])
    info = core.certificate_info(
        core.sign_certificate(ca["cert"], ca["key"], csr, "system:kube-proxy", ["system:node-proxier"])
    )
    assert info["subject"] == {"cn": "system:kube-proxy", "o": ["system:node-proxier"]}
    assert info["dns"] == []


def test_sign_certificate_accepts_a_bare_public_key(ca, leaf_key):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    pub = (
        load_pem_private_key(leaf_key.encode(), None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    c = core.sign_certificate(ca["cert"], ca["key"], pub, "front-proxy-client")
    assert core.needs_renewal(c, {"key_pem": leaf_key, "ca_pem": ca["cert"]}, 30) == []


def test_sign_certificate_refuses_a_csr_whose_signature_does_not_verify(ca, leaf_key):
    from cryptography.hazmat.primitives import serialization

    der = bytearray(
        x509.load_pem_x509_csr(core.create_csr(leaf_key, "x").encode()).public_bytes(serialization.Encoding.DER)
    )
    der[-1] ^= 0x01  # last byte of the signature's s value: still well-formed, no longer valid
    forged = x509.load_der_x509_csr(bytes(der))
    assert not forged.is_signature_valid
    with pytest.raises(CommandExecutionError, match="the CSR's signature does not verify"):
        core.sign_certificate(ca["cert"], ca["key"], forged.public_bytes(serialization.Encoding.PEM).decode(), "x")


def test_sign_certificate_refuses_a_ca_key_that_is_not_the_ca_certificates(ca, leaf_key):
    with pytest.raises(
        CommandExecutionError, match="CA private key does not belong to the CA certificate 'CN=kubernetes'"
    ):
        core.sign_certificate(ca["cert"], core.generate_private_key(), core.create_csr(leaf_key, "x"), "x")


def test_sign_certificate_refuses_an_issuer_that_is_not_a_ca(ca, leaf_key):
    not_ca = issue(ca, leaf_key)
    with pytest.raises(CommandExecutionError, match="is not a CA"):
        core.sign_certificate(not_ca, leaf_key, core.create_csr(leaf_key, "x"), "x")


@pytest.mark.parametrize("usages", [["peer"], [], "codeSigning"])
def test_sign_certificate_refuses_unknown_usages(ca, leaf_key, usages):
    with pytest.raises(SaltInvocationError, match="usages: .* is not a non-empty list of server, client"):
        core.sign_certificate(ca["cert"], ca["key"], core.create_csr(leaf_key, "x"), "x", usages=usages)


def test_leaf_lifetime_is_capped_at_the_ca_expiry(leaf_key):
    key = core.generate_private_key()
    short_ca = core.create_ca(key, "short", days=10)
    c = cert(core.sign_certificate(short_ca, key, core.create_csr(leaf_key, "x"), "x", days=365))
    assert c.not_valid_after_utc == cert(short_ca).not_valid_after_utc


def test_an_expired_ca_refuses_to_sign(leaf_key):
    key = core.generate_private_key()
    old = core.create_ca(key, "old", days=1, now=now() - 3 * DAY)
    with pytest.raises(CommandExecutionError, match="CA 'CN=old' expired on"):
        core.sign_certificate(old, key, core.create_csr(leaf_key, "x"), "x")


# certificate_info ---------------------------------------------------------------------------------------------------
def test_certificate_info_reports_subject_issuer_sans_dates_serial_and_key(ca, leaf_key):
    pem = issue(ca, leaf_key)
    info = core.certificate_info(pem)
    c = cert(pem)
    assert info["subject"] == {"cn": "system:node:worker01", "o": ["system:nodes"]}
    assert info["issuer"] == {"cn": "kubernetes", "o": []}
    assert info["usages"] == ["server", "client"] and info["is_ca"] is False
    assert info["days_left"] == 364
    assert info["serial"] == format(c.serial_number, "x")
    assert info["not_after"] == c.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert info["public_key_fingerprint"] == core.private_key_info(leaf_key)["public_key_fingerprint"]
    assert info["key_type"] == "ecdsa-p256"


# needs_renewal ------------------------------------------------------------------------------------------------------
EXPECTED = {
    "cn": "system:node:worker01",
    "o": ["system:nodes"],
    "dns": ["worker01"],
    "ips": ["10.240.0.21"],
    "usages": ["server", "client"],
}


def test_a_valid_matching_certificate_needs_no_renewal(ca, leaf_key):
    pem = issue(ca, leaf_key)
    assert core.needs_renewal(pem, dict(EXPECTED, ca_pem=ca["cert"], key_pem=leaf_key), 30) == []


def test_an_expired_certificate_needs_renewal(ca, leaf_key):
    pem = issue(ca, leaf_key, days=10, now=now() - 20 * DAY)
    assert core.needs_renewal(pem, EXPECTED, 1)[0].startswith("expired on")


def test_a_certificate_with_fewer_than_renew_days_left_needs_renewal(ca, leaf_key):
    pem = issue(ca, leaf_key, days=365)
    assert any("less than renew_days" in r for r in core.needs_renewal(pem, EXPECTED, 30, now=now() + 340 * DAY))
    assert core.needs_renewal(pem, EXPECTED, 30, now=now() + 200 * DAY) == []


def test_a_certificate_past_two_thirds_of_its_lifetime_needs_renewal(ca, leaf_key):
    pem = issue(ca, leaf_key, days=90)
    assert core.needs_renewal(pem, EXPECTED, 1, now=now() + 59 * DAY) == []
    assert any("two thirds" in r for r in core.needs_renewal(pem, EXPECTED, 1, now=now() + 61 * DAY))


def test_a_certificate_not_yet_valid_needs_renewal(ca, leaf_key):
    pem = issue(ca, leaf_key, now=now() + 2 * DAY)
    assert core.needs_renewal(pem, EXPECTED, 30)[0].startswith("not valid before")


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("cn", "system:node:worker02", "CN is"),
        ("o", ["system:masters"], "O is"),
        ("dns", ["worker01", "worker01.lab.example"], "DNS SANs are"),
        ("ips", ["10.240.0.99"], "IP SANs are"),
        ("usages", ["client"], "usages are"),
    ],
)
def test_a_certificate_differing_from_the_policy_needs_renewal(ca, leaf_key, field, value, reason):
    pem = issue(ca, leaf_key)
    reasons = core.needs_renewal(pem, dict(EXPECTED, **{field: value}), 30)
    assert len(reasons) == 1 and reasons[0].startswith(reason)


def test_san_comparison_ignores_order_case_and_ip_spelling(ca, leaf_key):
    pem = issue(ca, leaf_key, dns=["Worker01", "a.example"], ips=["fd00::1", "10.240.0.21"])
    assert (
        core.needs_renewal(pem, dict(EXPECTED, dns=["a.example", "worker01"], ips=["10.240.0.21", "fd00:0::1"]), 30)
        == []
    )


def test_a_certificate_from_another_ca_with_the_same_name_needs_renewal(ca, leaf_key):
    impostor_key = core.generate_private_key()
    impostor = {"key": impostor_key, "cert": core.create_ca(impostor_key, "kubernetes")}  # same CN, other key
    pem = issue(impostor, leaf_key)
    reasons = core.needs_renewal(pem, dict(EXPECTED, ca_pem=ca["cert"]), 30)
    assert reasons == ["not issued by the current CA 'CN=kubernetes' (issuer is 'CN=kubernetes')"]


def test_a_certificate_for_another_key_needs_renewal(ca, leaf_key):
    pem = issue(ca, leaf_key)
    assert core.needs_renewal(pem, {"key_pem": core.generate_private_key()}, 30) == ["does not match its private key"]


def test_an_unreadable_certificate_needs_renewal():
    assert core.needs_renewal("garbage", EXPECTED, 30)[0].startswith("unreadable")
