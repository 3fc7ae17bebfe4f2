"""
kubesalt's X.509 core: keys, CAs, CSRs and certificates as PEM strings, with the ``cryptography`` library only (no
openssl shell-outs). Nothing here reads files or Salt's dunders; ``k8s_pki`` (the policy and the Salt glue) and the
PKI states call it, and so do the tests.

Choices: keys are unencrypted PKCS#8 PEM; every certificate has a random serial and a notBefore five minutes in the
past (clock skew); a leaf's notAfter is capped at its CA's; a CSR contributes only its public key (its signature must
verify) -- subject, SANs and usages always come from the caller's policy.
"""

import datetime
import hashlib
import ipaddress

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import data

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - reported by the modules' __virtual__
    HAS_CRYPTOGRAPHY = False

USAGES = ("server", "client")
BACKDATE = datetime.timedelta(minutes=5)


def utcnow():
    """The current time, timezone-aware (UTC)."""
    return datetime.datetime.now(datetime.timezone.utc)


def _text(value, what):
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str) or not value.strip():
        raise SaltInvocationError(f"{what}: expected a PEM string, got {type(value).__name__} {value!r:.60}")
    return value


def _check_days(days, what="days"):
    if not isinstance(days, int) or isinstance(days, bool) or days <= 0:
        raise SaltInvocationError(f"{what}: '{days}' must be a positive number of days")


def _check_dns(name):
    """Return the lowercased DNS name, or raise naming it. A leading '*.' wildcard is allowed."""
    text = str(name).strip().lower()
    if not data.is_dns_name(text, wildcard=True):
        raise SaltInvocationError(f"malformed DNS SAN '{name}': not a DNS name (labels of a-z, 0-9 and '-')")
    return text


def _check_ip(value):
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise SaltInvocationError(f"malformed IP SAN '{value}': not an IPv4 or IPv6 address") from None


def _check_usages(usages):
    usages = data.as_list(usages)
    bad = [u for u in usages if u not in USAGES]
    if bad or not usages:
        raise SaltInvocationError(f"usages: {bad or usages!r} is not a non-empty list of {', '.join(USAGES)}")
    return [u for u in USAGES if u in usages]


def _load_private_key(pem, what="private key"):
    data = _text(pem, what).encode()
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CommandExecutionError(f"{what}: the key is encrypted; kubesalt keys are unencrypted PEM") from None
    except ValueError as exc:
        raise CommandExecutionError(f"{what}: not a PEM private key ({exc})") from None


def _load_cert(pem, what="certificate"):
    try:
        return x509.load_pem_x509_certificate(_text(pem, what).encode())
    except ValueError as exc:
        raise CommandExecutionError(f"{what}: not a PEM certificate ({exc})") from None


def _load_csr(pem, what="CSR"):
    try:
        csr = x509.load_pem_x509_csr(_text(pem, what).encode())
    except ValueError as exc:
        raise CommandExecutionError(f"{what}: not a PEM certificate signing request ({exc})") from None
    if not csr.is_signature_valid:
        raise CommandExecutionError(f"{what}: the CSR's signature does not verify; it was not made with its key")
    return csr


def _key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _spki(public_key):
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _fingerprint(public_key):
    return "sha256:" + hashlib.sha256(_spki(public_key)).hexdigest()


def _key_type(public_key):
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ecdsa-p256" if isinstance(public_key.curve, ec.SECP256R1) else f"ecdsa-{public_key.curve.name}"
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa-{public_key.key_size}"
    return type(public_key).__name__


def _signing_hash(private_key):
    if isinstance(private_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        return hashes.SHA256()
    raise CommandExecutionError(f"signing key: unsupported key type {_key_type(private_key.public_key())}")


def _name(common_name, organizations=()):
    if not isinstance(common_name, str) or not common_name.strip():
        raise SaltInvocationError(f"common_name: '{common_name}' must be a non-empty string")
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(o)) for o in data.as_list(organizations)]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _san(dns, ips):
    names = [x509.DNSName(_check_dns(d)) for d in data.dedupe(data.as_list(dns))]
    names += [x509.IPAddress(_check_ip(i)) for i in data.dedupe(data.as_list(ips))]
    return x509.SubjectAlternativeName(names) if names else None


def _attr(name, oid):
    return [a.value for a in name.get_attributes_for_oid(oid)]


def _ext(cert, cls):
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def _sans_of(obj):
    san = _ext(obj, x509.SubjectAlternativeName)
    if san is None:
        return [], []
    return san.get_values_for_type(x509.DNSName), [str(i) for i in san.get_values_for_type(x509.IPAddress)]


def _usages_of(cert):
    eku = _ext(cert, x509.ExtendedKeyUsage)
    found = set(eku or ())
    return [
        u
        for u, oid in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH))
        if oid in found
    ]


def _is_ca(cert):
    bc = _ext(cert, x509.BasicConstraints)
    return bool(bc and bc.ca)


def _key_usage(ca, encipherment=False):
    """keyUsage: digitalSignature always; keyCertSign and cRLSign for a CA; keyEncipherment for an RSA leaf."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_private_key(key_type="ecdsa-p256"):
    """
    Generate a private key and return it as unencrypted PKCS#8 PEM.

    key_type
        ``ecdsa-p256`` (default), ``rsa-2048``, ``rsa-3072`` or ``rsa-4096``.
    """
    if key_type == "ecdsa-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type in data.KEY_TYPES:
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(key_type.split("-")[1]))
    else:
        raise SaltInvocationError(f"key_type: '{key_type}' is not supported; use one of {', '.join(data.KEY_TYPES)}")
    return _key_pem(key)


def private_key_info(key_pem):
    """
    Describe a PEM private key: ``{"key_type": "ecdsa-p256", "public_key_fingerprint": "sha256:..."}``.
    The fingerprint is the SHA-256 of the DER SubjectPublicKeyInfo, as in :py:func:`certificate_info`.
    """
    public = _load_private_key(key_pem).public_key()
    return {"key_type": _key_type(public), "public_key_fingerprint": _fingerprint(public)}


def public_key(key_pem):
    """
    The PEM SubjectPublicKeyInfo ("PUBLIC KEY") of a PEM private key -- e.g. the service-account verification key
    kube-apiserver reads with ``--service-account-key-file`` (it cannot read an ECDSA key in PKCS#8 form).
    """
    public = _load_private_key(key_pem).public_key()
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def create_ca(key_pem, common_name, days=3650, now=None):
    """
    Create a self-signed CA certificate for ``key_pem`` and return it as PEM: basicConstraints ``CA:TRUE``
    (critical), keyUsage keyCertSign, cRLSign, digitalSignature (critical), subjectKeyIdentifier, a random serial,
    notBefore five minutes ago. Calling it again with the same key and name re-signs the CA (renewal): certificates
    it issued keep verifying.

    now
        Issue as if the time were ``now`` (a timezone-aware datetime); for tests.
    """
    _check_days(days)
    key = _load_private_key(key_pem, "CA private key")
    subject = _name(common_name)
    now = now or utcnow()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, _signing_hash(key)).public_bytes(serialization.Encoding.PEM).decode()


def create_csr(key_pem, common_name, organizations=(), dns=(), ips=()):
    """
    Create a certificate signing request for ``key_pem``, signed with it, and return it as PEM.
    """
    key = _load_private_key(key_pem)
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name, organizations))
    san = _san(dns, ips)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(key, _signing_hash(key)).public_bytes(serialization.Encoding.PEM).decode()


def sign_certificate(
    ca_cert_pem,
    ca_key_pem,
    public_key_or_csr_pem,
    common_name,
    organizations=(),
    dns=(),
    ips=(),
    usages=("client",),
    days=365,
    now=None,
):
    """
    Issue a leaf certificate signed by a CA and return it as PEM. Subject, SANs and usages are the arguments given
    here, never those inside a CSR (a CSR contributes its public key; its signature must verify).

    usages
        Any of ``server`` (extKeyUsage serverAuth) and ``client`` (clientAuth). keyUsage is digitalSignature, plus
        keyEncipherment for RSA keys.

    The certificate has basicConstraints ``CA:FALSE`` (critical), subjectAltName, subject and authority key
    identifiers, a random serial and notBefore five minutes ago. Its notAfter is ``days`` from now, capped at the CA's
    notAfter.
    """
    _check_days(days)
    usages = _check_usages(usages)
    ca_cert = _load_cert(ca_cert_pem, "CA certificate")
    ca_key = _load_private_key(ca_key_pem, "CA private key")
    if _spki(ca_key.public_key()) != _spki(ca_cert.public_key()):
        raise CommandExecutionError(
            f"CA private key does not belong to the CA certificate '{ca_cert.subject.rfc4514_string()}'"
        )
    if not _is_ca(ca_cert):
        raise CommandExecutionError(
            f"CA certificate '{ca_cert.subject.rfc4514_string()}' is not a CA (basicConstraints CA:TRUE missing)"
        )
    now = now or utcnow()
    if ca_cert.not_valid_after_utc <= now:
        raise CommandExecutionError(
            f"CA '{ca_cert.subject.rfc4514_string()}' expired on {_iso(ca_cert.not_valid_after_utc)}; renew it first"
        )
    text = _text(public_key_or_csr_pem, "public key or CSR")
    if "CERTIFICATE REQUEST" in text:
        public_key = _load_csr(text).public_key()
    else:
        try:
            public_key = serialization.load_pem_public_key(text.encode())
        except ValueError as exc:
            raise CommandExecutionError(f"public key or CSR: not a PEM public key or CSR ({exc})") from None
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    ski = _ext(ca_cert, x509.SubjectKeyIdentifier)
    aki = (
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        if ski
        else x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    )
    eku = [
        oid
        for u, oid in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH))
        if u in usages
    ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False, encipherment=is_rsa), critical=True)
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
    )
    san = _san(dns, ips)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, _signing_hash(ca_key)).public_bytes(serialization.Encoding.PEM).decode()


# Security strength in bits (NIST SP 800-57 part 1) of the key types kubesalt may meet.
STRENGTH = {"rsa-2048": 112, "rsa-3072": 128, "ecdsa-p256": 128, "rsa-4096": 140, "ecdsa-secp384r1": 192}


def strength(key_type):
    """Bits of security of a key type (``ecdsa-p256``, ``rsa-3072``, ...); 0 for a type kubesalt does not know."""
    if key_type in STRENGTH:
        return STRENGTH[key_type]
    if key_type.startswith("rsa-") and key_type[4:].isdigit():
        bits = int(key_type[4:])
        return 0 if bits < 2048 else 112 if bits < 3072 else 128 if bits < 4096 else 140
    return 0


def normal_ip(value):
    """An IP address in its normal text form (``::1`` for ``0:0::1``)."""
    return str(_check_ip(value))


def csr_info(csr_pem, what="CSR"):
    """What a CSR asks for: ``{"cn", "o", "dns", "ips"}``; its signature must verify (proof of possession)."""
    csr = _load_csr(csr_pem, what)
    dns, ips = _sans_of(csr)
    return {
        "key_type": _key_type(csr.public_key()),
        "cn": (_attr(csr.subject, NameOID.COMMON_NAME) or [""])[0],
        "o": _attr(csr.subject, NameOID.ORGANIZATION_NAME),
        "dns": list(dns),
        "ips": [normal_ip(i) for i in ips],
    }


def certificate_info(cert_pem, now=None):
    """
    Describe a PEM certificate: subject and issuer (``cn``, ``o``), ``dns`` and ``ips`` SANs, ``usages``,
    ``is_ca``, ``not_before``/``not_after`` (ISO 8601, UTC), ``days_left`` (whole days, negative once expired),
    ``serial`` (hex), ``key_type`` and ``public_key_fingerprint`` (SHA-256 of the SubjectPublicKeyInfo).
    """
    cert = _load_cert(cert_pem)
    now = now or utcnow()
    dns, ips = _sans_of(cert)
    left = cert.not_valid_after_utc - now
    return {
        "subject": {
            "cn": (_attr(cert.subject, NameOID.COMMON_NAME) or [""])[0],
            "o": _attr(cert.subject, NameOID.ORGANIZATION_NAME),
        },
        "issuer": {
            "cn": (_attr(cert.issuer, NameOID.COMMON_NAME) or [""])[0],
            "o": _attr(cert.issuer, NameOID.ORGANIZATION_NAME),
        },
        "dns": dns,
        "ips": ips,
        "usages": _usages_of(cert),
        "is_ca": _is_ca(cert),
        "not_before": _iso(cert.not_valid_before_utc),
        "not_after": _iso(cert.not_valid_after_utc),
        "days_left": int(left.total_seconds() // 86400),
        "serial": format(cert.serial_number, "x"),
        "key_type": _key_type(cert.public_key()),
        "public_key_fingerprint": _fingerprint(cert.public_key()),
    }


def needs_renewal(cert_pem, expected, renew_days, now=None):
    """
    Return the reasons (a list of strings) why a certificate must be reissued; an empty list means keep it.

    expected
        A dict; every key present is checked: ``cn``, ``o`` (list), ``dns`` (list), ``ips`` (list), ``usages``
        (list of server/client), ``is_ca`` (bool), ``ca_pem`` (the current CA certificate: issuer name and
        signature are verified), ``key_pem`` (the private key the certificate must belong to) or, cheaper,
        ``public_key_fingerprint`` of that key (from :py:func:`private_key_info`). An entitlement from
        ``kubesalt.pki.entitlements`` can be passed as is (its ``ca`` name is ignored).

    Time rules: expired or not yet valid; fewer than ``renew_days`` days left; past two thirds of the lifetime.
    """
    try:
        cert = _load_cert(cert_pem)
    except (CommandExecutionError, SaltInvocationError) as exc:
        return [f"unreadable: {exc}"]
    now = now or utcnow()
    expected = expected or {}
    reasons = []
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now >= end:
        reasons.append(f"expired on {_iso(end)}")
    elif now < start:
        reasons.append(f"not valid before {_iso(start)}")
    else:
        left = end - now
        if left < datetime.timedelta(days=renew_days):
            reasons.append(f"expires on {_iso(end)}, in less than renew_days ({renew_days})")
        if now >= start + (end - start) * 2 / 3:
            reasons.append(f"past two thirds of its lifetime ({_iso(start)} to {_iso(end)})")

    cn = (_attr(cert.subject, NameOID.COMMON_NAME) or [""])[0]
    if "cn" in expected and cn != expected["cn"]:
        reasons.append(f"CN is '{cn}', expected '{expected['cn']}'")
    if "o" in expected:
        have = sorted(_attr(cert.subject, NameOID.ORGANIZATION_NAME))
        want = sorted(str(o) for o in data.as_list(expected["o"]))
        if have != want:
            reasons.append(f"O is {have}, expected {want}")
    dns, ips = _sans_of(cert)
    if "dns" in expected:
        have, want = sorted({d.lower() for d in dns}), sorted({str(d).lower() for d in data.as_list(expected["dns"])})
        if have != want:
            reasons.append(f"DNS SANs are {have}, expected {want}")
    if "ips" in expected:
        have = sorted({ipaddress.ip_address(i) for i in ips}, key=str)
        want = sorted({ipaddress.ip_address(str(i)) for i in data.as_list(expected["ips"])}, key=str)
        if have != want:
            reasons.append(f"IP SANs are {[str(i) for i in have]}, expected {[str(i) for i in want]}")
    if "usages" in expected:
        have, want = _usages_of(cert), [u for u in USAGES if u in data.as_list(expected["usages"])]
        if have != want:
            reasons.append(f"usages are {have}, expected {want}")
    if "is_ca" in expected and _is_ca(cert) != bool(expected["is_ca"]):
        reasons.append(f"basicConstraints CA is {_is_ca(cert)}, expected {bool(expected['is_ca'])}")
    if expected.get("ca_pem"):
        ca = _load_cert(expected["ca_pem"], "expected CA certificate")
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            reasons.append(
                f"not issued by the current CA '{ca.subject.rfc4514_string()}' "
                f"(issuer is '{cert.issuer.rfc4514_string()}')"
            )
    fingerprint = expected.get("public_key_fingerprint")
    if expected.get("key_pem"):
        fingerprint = _fingerprint(_load_private_key(expected["key_pem"]).public_key())
    if fingerprint and fingerprint != _fingerprint(cert.public_key()):
        reasons.append("does not match its private key")
    return reasons
