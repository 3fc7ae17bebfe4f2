"""
kubesalt PKI: keys, CAs, certificates, and the policy of which minion may hold which certificate.

Three layers, from the inside out:

1. Pure functions over PEM strings (:py:func:`generate_private_key`, :py:func:`create_ca`, :py:func:`create_csr`,
   :py:func:`sign_certificate`, :py:func:`certificate_info`, :py:func:`needs_renewal`). Nothing here reads files or
   Salt dunders; unit tests and other modules call them directly. ``cryptography`` only, no openssl shell-outs.
2. The entitlement policy, :py:func:`entitlements`: a pure function of the cluster settings (the output of
   ``k8s.settings``, i.e. what ``k8s/map.jinja`` yields) and a minion id. It reads roles and addresses from
   ``k8s:nodes`` only (master-side pillar), never from grains, which a minion sets for itself.
3. Salt glue at the edge: :py:func:`sign_remote` / :py:func:`fetch_secret_remote` run on the CA minion when another
   minion calls them through peer publish; :py:func:`sign_local` / :py:func:`fetch_secret_local` when the CA minion
   asks for itself; :py:func:`status` reports the certificates on a node.

Design choices:

- **The CA ignores what a CSR asks for.** Subject, O and SANs come from :py:func:`entitlements` for the requesting
  minion id (``__pub_id``, set by the salt-master); the CSR contributes only its public key, and its signature is
  verified as proof of possession. A CSR that asks for something else (for example ``O=system:masters`` from a
  worker) is not refused: the request is logged as a warning and the certificate carries the policy's subject only.
  This mirrors ``x509_v2`` signing policies, whose fields override the request, and keeps a node whose pillar view is
  stale from being locked out (the node-side state then reports the difference).
- **Admin identity**: ``admin`` is ``CN=kubernetes-admin, O=system:masters``, the pre-1.29 kubeadm ``admin.conf``.
  Kubernetes 1.29 split this into ``kubeadm:cluster-admins`` (bound by a ClusterRoleBinding that kubeadm creates) and
  a break-glass ``super-admin.conf`` with ``system:masters``. kubesalt creates no bootstrap RBAC objects before the
  API server is up, and supports releases back to 1.20, so the admin credential is the ``system:masters`` one; it is
  issued only to masters, and only masters hold it.
- **apiserver-kubelet-client** is ``CN=kube-apiserver-kubelet-client, O=kubesalt:apiserver-kubelet-client``. That
  group is not built in: the formulas bind it to the ``system:kubelet-api-admin`` ClusterRole so the API server may
  call the kubelet API (logs, exec, port-forward).
- **Renewal**: a certificate is renewed when it is expired or not yet valid, has fewer than ``k8s:pki:renew_days``
  left, is past two thirds of its lifetime, differs from the policy (CN, O, SANs, usages), is not signed by the
  current CA (issuer name *and* signature checked), or does not match its private key.
- **Leaf lifetimes never outlast their CA**: ``notAfter`` is capped at the CA's ``notAfter``.
- ``flannel-etcd-client`` is issued only in network mode ``flannel``: etcd 3.4 without its own auth gives any client
  certificate from the etcd CA full access to all keys, Kubernetes secrets included. In ``routes`` mode no worker
  needs etcd access, so none gets it.

Layout (see :py:func:`layout`): on every node ``<pki_dir>/<identity>.crt|.key`` and ``<pki_dir>/<ca>.crt``; on the
CA minion only, ``<ca_dir>/<ca>.crt|.key`` and the cluster secrets. ``ca_dir`` must be mode 0700 (no group/world
access) and its keys 0600; the CA refuses to sign otherwise. CA private keys are never returned by any function.
"""

import base64
import datetime
import hashlib
import ipaddress
import logging
import os
import re
import secrets as _secrets
import stat

import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - reported by __virtual__
    HAS_CRYPTOGRAPHY = False

log = logging.getLogger(__name__)

__virtualname__ = "k8s_pki"

KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096")
USAGES = ("server", "client")
BACKDATE = datetime.timedelta(minutes=5)

# CA name -> default common name (kubeadm's).
CAS = {"kubernetes-ca": "kubernetes", "etcd-ca": "etcd-ca", "front-proxy-ca": "front-proxy-ca"}

# Every identity the CA knows, in a stable order, with the CA that issues it.
IDENTITIES = {
    "apiserver": "kubernetes-ca",
    "apiserver-kubelet-client": "kubernetes-ca",
    "apiserver-etcd-client": "etcd-ca",
    "front-proxy-client": "front-proxy-ca",
    "kube-controller-manager": "kubernetes-ca",
    "kube-scheduler": "kubernetes-ca",
    "admin": "kubernetes-ca",
    "kubelet": "kubernetes-ca",
    "kube-proxy": "kubernetes-ca",
    "flannel-etcd-client": "etcd-ca",
    "etcd-server": "etcd-ca",
    "etcd-peer": "etcd-ca",
    "etcd-healthcheck-client": "etcd-ca",
}

# Group bound by the formulas to the system:kubelet-api-admin ClusterRole.
APISERVER_KUBELET_CLIENT_GROUP = "kubesalt:apiserver-kubelet-client"

# Cluster secrets held on the CA minion: name -> file name (in ca_dir on the CA minion, pki_dir on masters).
SECRETS = {"service-account": "service-account.key", "encryption-config": "encryption-config.yaml"}

_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def __virtual__():
    if not HAS_CRYPTOGRAPHY:
        return (False, "k8s_pki: the 'cryptography' Python library (>= 41) is not installed on this minion")
    return __virtualname__


# --------------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------------
def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _as_list(value):
    """None -> [], a single string -> [it], any other iterable -> list."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    return list(value)


def _dedupe(values):
    seen, out = set(), []
    for value in values:
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out


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
    labels = text[2:].split(".") if text.startswith("*.") else text.split(".")
    if not text or len(text) > 253 or not all(_DNS_LABEL_RE.match(label) for label in labels):
        raise SaltInvocationError(f"malformed DNS SAN '{name}': not a DNS name (labels of a-z, 0-9 and '-')")
    return text


def _check_ip(value):
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise SaltInvocationError(f"malformed IP SAN '{value}': not an IPv4 or IPv6 address") from None


def _check_usages(usages):
    usages = _as_list(usages)
    bad = [u for u in usages if u not in USAGES]
    if bad or not usages:
        raise SaltInvocationError(
            f"usages: {bad or usages!r} is not a non-empty list of {', '.join(USAGES)}"
        )
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
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(o)) for o in _as_list(organizations)]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _san(dns, ips):
    names = [x509.DNSName(_check_dns(d)) for d in _dedupe(_as_list(dns))]
    names += [x509.IPAddress(_check_ip(i)) for i in _dedupe(_as_list(ips))]
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
    return [u for u, oid in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH))
            if oid in found]


def _is_ca(cert):
    bc = _ext(cert, x509.BasicConstraints)
    return bool(bc and bc.ca)


def _iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------------------------------
# Pure core: keys, CAs, CSRs, certificates
# --------------------------------------------------------------------------------------------------------------------
def generate_private_key(key_type="ecdsa-p256"):
    """
    Generate a private key and return it as unencrypted PKCS#8 PEM.

    key_type
        ``ecdsa-p256`` (default), ``rsa-2048``, ``rsa-3072`` or ``rsa-4096``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.generate_private_key rsa-2048
    """
    if key_type == "ecdsa-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type in KEY_TYPES:
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(key_type.split("-")[1]))
    else:
        raise SaltInvocationError(f"key_type: '{key_type}' is not supported; use one of {', '.join(KEY_TYPES)}")
    return _key_pem(key)


def private_key_info(key_pem):
    """
    Describe a PEM private key: ``{"key_type": "ecdsa-p256", "public_key_fingerprint": "sha256:..."}``.
    The fingerprint is the SHA-256 of the DER SubjectPublicKeyInfo, as in :py:func:`certificate_info`.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.private_key_info "$(cat /etc/kubernetes/pki/kubelet.key)"
    """
    public = _load_private_key(key_pem).public_key()
    return {"key_type": _key_type(public), "public_key_fingerprint": _fingerprint(public)}


def public_key(key_pem):
    """
    The PEM SubjectPublicKeyInfo ("PUBLIC KEY") of a PEM private key -- e.g. the service-account verification key
    kube-apiserver reads with ``--service-account-key-file`` (it cannot read an ECDSA key in PKCS#8 form).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.public_key "$(cat /etc/kubernetes/pki/service-account.key)"
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

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.create_ca "$(cat ca.key)" kubernetes days=3650
    """
    _check_days(days)
    key = _load_private_key(key_pem, "CA private key")
    subject = _name(common_name)
    now = now or _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, _signing_hash(key)).public_bytes(serialization.Encoding.PEM).decode()


def create_csr(key_pem, common_name, organizations=(), dns=(), ips=()):
    """
    Create a certificate signing request for ``key_pem``, signed with it, and return it as PEM.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.create_csr "$(cat kubelet.key)" system:node:worker01 organizations='[system:nodes]'
    """
    key = _load_private_key(key_pem)
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name, organizations))
    san = _san(dns, ips)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(key, _signing_hash(key)).public_bytes(serialization.Encoding.PEM).decode()


def sign_certificate(ca_cert_pem, ca_key_pem, public_key_or_csr_pem, common_name, organizations=(), dns=(), ips=(),
                     usages=("client",), days=365, now=None):
    """
    Issue a leaf certificate signed by a CA and return it as PEM. Subject, SANs and usages are the arguments given
    here, never those inside a CSR (a CSR contributes its public key; its signature must verify).

    usages
        Any of ``server`` (extKeyUsage serverAuth) and ``client`` (clientAuth). keyUsage is digitalSignature, plus
        keyEncipherment for RSA keys.

    The certificate has basicConstraints ``CA:FALSE`` (critical), subjectAltName, subject and authority key
    identifiers, a random serial and notBefore five minutes ago. Its notAfter is ``days`` from now, capped at the CA's
    notAfter.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.sign_certificate "$(cat ca.crt)" "$(cat ca.key)" "$(cat req.csr)" kube-proxy \\
            organizations='[system:node-proxier]' usages='[client]'
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
    now = now or _now()
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
    aki = (x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski) if ski
           else x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()))
    eku = [oid for u, oid in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH))
           if u in usages]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=is_rsa, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
    )
    san = _san(dns, ips)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, _signing_hash(ca_key)).public_bytes(serialization.Encoding.PEM).decode()


def certificate_info(cert_pem, now=None):
    """
    Describe a PEM certificate: subject and issuer (``cn``, ``o``), ``dns`` and ``ips`` SANs, ``usages``,
    ``is_ca``, ``not_before``/``not_after`` (ISO 8601, UTC), ``days_left`` (whole days, negative once expired),
    ``serial`` (hex), ``key_type`` and ``public_key_fingerprint`` (SHA-256 of the SubjectPublicKeyInfo).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.certificate_info "$(cat /etc/kubernetes/pki/apiserver.crt)"
    """
    cert = _load_cert(cert_pem)
    now = now or _now()
    dns, ips = _sans_of(cert)
    left = cert.not_valid_after_utc - now
    return {
        "subject": {"cn": (_attr(cert.subject, NameOID.COMMON_NAME) or [""])[0],
                    "o": _attr(cert.subject, NameOID.ORGANIZATION_NAME)},
        "issuer": {"cn": (_attr(cert.issuer, NameOID.COMMON_NAME) or [""])[0],
                   "o": _attr(cert.issuer, NameOID.ORGANIZATION_NAME)},
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
        :py:func:`entitlements` can be passed as is (its ``ca`` name is ignored).

    Time rules: expired or not yet valid; fewer than ``renew_days`` days left; past two thirds of the lifetime.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.needs_renewal "$(cat kubelet.crt)" '{cn: "system:node:worker01"}' 30
    """
    try:
        cert = _load_cert(cert_pem)
    except (CommandExecutionError, SaltInvocationError) as exc:
        return [f"unreadable: {exc}"]
    now = now or _now()
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
        want = sorted(str(o) for o in _as_list(expected["o"]))
        if have != want:
            reasons.append(f"O is {have}, expected {want}")
    dns, ips = _sans_of(cert)
    if "dns" in expected:
        have, want = sorted({d.lower() for d in dns}), sorted({str(d).lower() for d in _as_list(expected["dns"])})
        if have != want:
            reasons.append(f"DNS SANs are {have}, expected {want}")
    if "ips" in expected:
        have = sorted({ipaddress.ip_address(i) for i in ips}, key=str)
        want = sorted({ipaddress.ip_address(str(i)) for i in _as_list(expected["ips"])}, key=str)
        if have != want:
            reasons.append(f"IP SANs are {[str(i) for i in have]}, expected {[str(i) for i in want]}")
    if "usages" in expected:
        have, want = _usages_of(cert), [u for u in USAGES if u in _as_list(expected["usages"])]
        if have != want:
            reasons.append(f"usages are {have}, expected {want}")
    if "is_ca" in expected and _is_ca(cert) != bool(expected["is_ca"]):
        reasons.append(f"basicConstraints CA is {_is_ca(cert)}, expected {bool(expected['is_ca'])}")
    if expected.get("ca_pem"):
        ca = _load_cert(expected["ca_pem"], "expected CA certificate")
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            reasons.append(f"not issued by the current CA '{ca.subject.rfc4514_string()}' "
                           f"(issuer is '{cert.issuer.rfc4514_string()}')")
    fingerprint = expected.get("public_key_fingerprint")
    if expected.get("key_pem"):
        fingerprint = _fingerprint(_load_private_key(expected["key_pem"]).public_key())
    if fingerprint and fingerprint != _fingerprint(cert.public_key()):
        reasons.append("does not match its private key")
    return reasons


# --------------------------------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------------------------------
def identities():
    """
    The certificate identities kubesalt knows, in a stable order.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.identities
    """
    return list(IDENTITIES)


def _cluster(config):
    cluster = (config or {}).get("cluster")
    if not isinstance(cluster, dict) or "masters" not in cluster:
        raise SaltInvocationError(
            "config: no derived 'cluster' facts; pass the settings produced by k8s.settings (k8s/map.jinja)"
        )
    return cluster


def _node_names(minion_id, node):
    return _dedupe([str(minion_id)] + [str(n) for n in _as_list(node.get("names"))])


def _node_ips(node):
    return [str(node["ip"])] if node.get("ip") else []


def _split_sans(values):
    dns, ips = [], []
    for value in _as_list(values):
        try:
            ips.append(str(ipaddress.ip_address(str(value))))
        except ValueError:
            dns.append(str(value))
    return dns, ips


def _ent(identity, cn, o=(), dns=(), ips=(), usages=("client",)):
    return {"ca": IDENTITIES[identity], "cn": cn, "o": list(o), "dns": _dedupe(dns), "ips": _dedupe(ips),
            "usages": list(usages)}


def entitlements(config, minion_id):
    """
    Every certificate ``minion_id`` may hold: ``{identity: {ca, cn, o, dns, ips, usages}}``. Computed only from
    the roles and addresses in ``k8s:nodes`` (``config`` is the output of ``k8s.settings``), never from grains.

    - worker: its own ``kubelet`` and ``kube-proxy`` (and ``flannel-etcd-client`` in network mode flannel);
    - master: ``apiserver``, ``apiserver-kubelet-client``, ``apiserver-etcd-client``, ``front-proxy-client``,
      ``kube-controller-manager``, ``kube-scheduler``, ``admin``, and its own ``kubelet``/``kube-proxy``
      (and ``flannel-etcd-client`` in network mode flannel);
    - etcd: its own ``etcd-server``, ``etcd-peer`` and ``etcd-healthcheck-client``.

    A minion that is not in ``k8s:nodes`` gets nothing.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.entitlements "$(salt-call --out=json k8s.config | jq .local)" worker01
    """
    cluster = _cluster(config)
    nodes = config.get("nodes") or {}
    minion_id = str(minion_id)
    if minion_id not in nodes or not isinstance(nodes[minion_id], dict):
        return {}
    node = nodes[minion_id]
    names, ips = _node_names(minion_id, node), _node_ips(node)
    local = ["localhost"]
    loopback = ["127.0.0.1"]
    flannel = (config.get("network") or {}).get("mode") == "flannel"
    ents = {}

    if minion_id in cluster.get("masters", []):
        domain = str(config.get("cluster_domain") or "cluster.local")
        extra_dns, extra_ips = _split_sans((config.get("pki") or {}).get("apiserver_extra_sans"))
        master_dns, master_ips = [], []
        for master in cluster["masters"]:
            master_dns += _node_names(master, nodes.get(master) or {})
            master_ips += _node_ips(nodes.get(master) or {})
        service_ip = [cluster["api_service_ip"]] if cluster.get("api_service_ip") else []
        ents["apiserver"] = _ent(
            "apiserver", "kube-apiserver",
            dns=master_dns + ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
                              f"kubernetes.default.svc.{domain}"] + local + extra_dns,
            ips=master_ips + service_ip + loopback + extra_ips,
            usages=("server",),
        )
        ents["apiserver-kubelet-client"] = _ent(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", o=[APISERVER_KUBELET_CLIENT_GROUP])
        ents["apiserver-etcd-client"] = _ent("apiserver-etcd-client", "kube-apiserver-etcd-client")
        ents["front-proxy-client"] = _ent("front-proxy-client", "front-proxy-client")
        for component in ("kube-controller-manager", "kube-scheduler"):
            ents[component] = _ent(
                component, f"system:{component}", o=[f"system:{component}"],
                dns=names + local, ips=ips + loopback, usages=("server", "client"),
            )
        ents["admin"] = _ent("admin", "kubernetes-admin", o=["system:masters"])

    if minion_id in cluster.get("masters", []) or minion_id in cluster.get("workers", []):
        ents["kubelet"] = _ent("kubelet", f"system:node:{minion_id}", o=["system:nodes"],
                               dns=names, ips=ips, usages=("server", "client"))
        ents["kube-proxy"] = _ent("kube-proxy", "system:kube-proxy", o=["system:node-proxier"])
        if flannel:
            ents["flannel-etcd-client"] = _ent("flannel-etcd-client", "flannel-etcd-client")

    if minion_id in cluster.get("etcd_members", []):
        for identity in ("etcd-server", "etcd-peer"):
            ents[identity] = _ent(identity, minion_id, dns=names + local, ips=ips + loopback,
                                  usages=("server", "client"))
        ents["etcd-healthcheck-client"] = _ent("etcd-healthcheck-client", "kube-etcd-healthcheck-client")

    return {identity: ents[identity] for identity in IDENTITIES if identity in ents}


def layout(config):
    """
    Where kubesalt keeps PKI files, from ``k8s:paths`` (fs_root already applied by ``k8s.settings``):

    - ``cas``: ``{ca: {cert, key, common_name, bundle}}``; ``cert``/``key`` in ``ca_dir`` on the CA minion only,
      ``bundle`` the copy every node gets in ``pki_dir``;
    - ``certificates``: ``{identity: {cert, key, ca_file}}`` in ``pki_dir``;
    - ``secrets``: ``{secret: {source, path}}``: ``source`` in ``ca_dir`` on the CA minion, ``path`` on masters.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.layout "$(salt-call --out=json k8s.config | jq .local)"
    """
    paths = (config or {}).get("paths") or {}
    pki, ca_dir = paths.get("pki_dir"), paths.get("ca_dir")
    if not pki or not ca_dir:
        raise SaltInvocationError("config: k8s:paths:pki_dir and k8s:paths:ca_dir must be set")
    return {
        "cas": {ca: {"cert": f"{ca_dir}/{ca}.crt", "key": f"{ca_dir}/{ca}.key", "common_name": cn,
                     "bundle": f"{pki}/{ca}.crt"} for ca, cn in CAS.items()},
        "certificates": {identity: {"cert": f"{pki}/{identity}.crt", "key": f"{pki}/{identity}.key",
                                    "ca_file": f"{pki}/{ca}.crt"}
                         for identity, ca in IDENTITIES.items()},
        "secrets": {name: {"source": f"{ca_dir}/{fname}", "path": f"{pki}/{fname}"}
                    for name, fname in SECRETS.items()},
    }


def generate_secret(name, key_type="ecdsa-p256"):
    """
    Generate the value of a cluster secret: ``service-account`` (the service-account token signing key, PEM of
    ``key_type``) or ``encryption-config`` (an EncryptionConfiguration YAML with a fresh 32-byte secretbox key for
    Secrets, falling back to identity for reading data written before encryption was enabled).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.generate_secret service-account
    """
    if name == "service-account":
        return generate_private_key(key_type)
    if name == "encryption-config":
        config = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "EncryptionConfiguration",
            "resources": [{
                "resources": ["secrets"],
                "providers": [
                    {"secretbox": {"keys": [{"name": "key1",
                                             "secret": base64.b64encode(_secrets.token_bytes(32)).decode()}]}},
                    {"identity": {}},
                ],
            }],
        }
        return yaml.safe_dump(config, default_flow_style=False, sort_keys=False)
    raise SaltInvocationError(f"secret: '{name}' is not a cluster secret; known: {', '.join(SECRETS)}")


# --------------------------------------------------------------------------------------------------------------------
# CA host: files and signing
# --------------------------------------------------------------------------------------------------------------------
def check_private_dir(path):
    """
    Check that ``path`` is a directory that neither group nor others can access (the CA directory must be 0700).
    Returns True, or raises naming the directory and its mode.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.check_private_dir /etc/kubernetes/pki/ca
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CommandExecutionError(f"CA directory {path} does not exist; apply k8s_pki.ca_present first") from None
    except OSError as exc:
        raise CommandExecutionError(f"CA directory {path}: cannot stat it ({exc.strerror})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise CommandExecutionError(f"CA directory {path} is not a directory")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise CommandExecutionError(
            f"CA directory {path} is mode {mode:04o}: group or others can access it, so the CA keys in it may have "
            f"been exposed; refusing to use it. Check who read them, then chmod 0700 {path}"
        )
    return True


def _read_private_file(path, what):
    """Read a key or secret from the CA directory: it must exist and have no group/world permission bits."""
    check_private_dir(os.path.dirname(path))
    try:
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise CommandExecutionError(
                f"{what} {path} is mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 (no group/world access)"
            )
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except FileNotFoundError:
        raise CommandExecutionError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandExecutionError(f"{what} {path} cannot be read ({exc})") from None


def _read_ca(config, ca):
    """(cert PEM, key PEM) of a CA, from ca_dir; the key never leaves this module."""
    files = layout(config)["cas"][ca]
    try:
        with open(files["cert"], encoding="ascii") as fh:
            cert = fh.read()
    except FileNotFoundError:
        raise CommandExecutionError(
            f"CA '{ca}' is missing on this minion: {files['cert']} does not exist; apply k8s_pki.ca_present first"
        ) from None
    except OSError as exc:
        raise CommandExecutionError(f"CA '{ca}': cannot read {files['cert']} ({exc.strerror})") from None
    key = _read_private_file(files["key"], f"CA '{ca}' private key")
    return cert, key


def _entitlement_for(config, requester, identity):
    if identity not in IDENTITIES:
        raise CommandExecutionError(
            f"unknown certificate identity '{identity}' requested by minion '{requester}'; "
            f"known identities: {', '.join(IDENTITIES)}"
        )
    ents = entitlements(config, requester)
    if not ents:
        raise CommandExecutionError(
            f"minion '{requester}' is not in k8s:nodes, so it may not obtain any certificate "
            f"(it requested '{identity}')"
        )
    if identity not in ents:
        roles = (config["nodes"][requester] or {}).get("roles")
        raise CommandExecutionError(
            f"minion '{requester}' is not entitled to the '{identity}' certificate (its roles in k8s:nodes: "
            f"{roles}); it may obtain: {', '.join(ents)}"
        )
    return ents[identity]


def _requested_differs(csr, ent):
    """What a CSR asks for that the policy will not put in the certificate (for the log)."""
    asked = {
        "cn": (_attr(csr.subject, NameOID.COMMON_NAME) or [""])[0],
        "o": sorted(_attr(csr.subject, NameOID.ORGANIZATION_NAME)),
    }
    asked["dns"], asked["ips"] = (sorted(v) for v in _sans_of(csr))
    granted = {"cn": ent["cn"], "o": sorted(ent["o"]), "dns": sorted(d.lower() for d in ent["dns"]),
               "ips": sorted(str(ipaddress.ip_address(i)) for i in ent["ips"])}
    asked["dns"] = [d.lower() for d in asked["dns"]]
    return {k: asked[k] for k in granted if asked[k] != granted[k]}


def _issue(config, requester, csr_pem, identity):
    """Sign ``csr_pem`` for ``requester`` as ``identity`` with the policy's subject; the CSR gives only its key."""
    ent = _entitlement_for(config, requester, identity)
    csr = _load_csr(csr_pem, f"CSR from minion '{requester}' for '{identity}'")
    differs = _requested_differs(csr, ent)
    if differs:
        log.warning("k8s_pki: minion '%s' asked for %s in its '%s' CSR; issuing the policy's subject/SANs instead",
                    requester, differs, identity)
    ca_cert, ca_key = _read_ca(config, ent["ca"])
    cert = sign_certificate(ca_cert, ca_key, csr_pem, ent["cn"], ent["o"], ent["dns"], ent["ips"], ent["usages"],
                            days=config["pki"]["cert_days"])
    log.info("k8s_pki: issued '%s' (CN=%s) to minion '%s'", identity, ent["cn"], requester)
    return {"certificate": cert, "ca": ca_cert}


def _read_secret(config, name):
    if name not in SECRETS:
        raise CommandExecutionError(f"unknown secret '{name}'; known secrets: {', '.join(SECRETS)}")
    source = layout(config)["secrets"][name]["source"]
    if not os.path.exists(source):
        raise CommandExecutionError(
            f"secret '{name}' does not exist on the CA minion ({source}); apply k8s_pki.secret_present there first"
        )
    return _read_private_file(source, f"secret '{name}'")


def _ca_config(config=None):
    """The settings on the CA minion; refuses when this minion is not the CA minion."""
    if config is None:
        config = __salt__["k8s.config"](validate=True)
    ca_minion = _cluster(config).get("ca_minion")
    if __opts__["id"] != ca_minion:
        raise CommandExecutionError(
            f"this minion ('{__opts__['id']}') is not the CA minion: k8s:pki:ca_minion resolves to "
            f"'{ca_minion}'; send the request there"
        )
    return config


def _requester(kwargs, fun):
    requester = kwargs.get("__pub_id")
    if not requester:
        raise CommandExecutionError(
            f"k8s_pki.{fun}: the minion sending this request could not be identified (no __pub_id); it must be "
            "called by another minion through peer publish (publish.publish), which sets it"
        )
    return str(requester)


def _refuse_peer(kwargs, fun):
    pub_id = kwargs.get("__pub_id")
    if pub_id and pub_id != __opts__["id"]:
        raise CommandExecutionError(
            f"k8s_pki.{fun} may not be called through peer publish (called by minion '{pub_id}'); "
            f"other minions use k8s_pki.{fun.replace('_local', '_remote')}"
        )


def sign_remote(csr, identity, **kwargs):
    """
    Sign a CSR for the minion that calls this through peer publish, on the CA minion. The requester is
    ``__pub_id``, set by the salt-master; the certificate's subject, SANs and usages are what
    :py:func:`entitlements` grants that minion for ``identity`` (what the CSR asks for is ignored and logged).
    Refuses when not called through peer publish, when this minion is not the CA minion, for unknown identities and
    for identities the requester is not entitled to. Returns ``{"certificate": PEM, "ca": CA PEM}``.

    The salt-master must allow it, for example
    ``peer: {'.*': ['k8s_pki.sign_remote'], '<master regex>': ['k8s_pki.fetch_secret_remote']}``; never allow
    ``k8s_pki.*``.

    CLI Example:

    .. code-block:: bash

        salt-call publish.publish master01 k8s_pki.sign_remote arg="['$(cat kubelet.csr)', kubelet]"
    """
    requester = _requester(kwargs, "sign_remote")
    return _issue(_ca_config(), requester, csr, identity)


def sign_local(csr, identity, config=None, **kwargs):
    """
    Sign a CSR for the CA minion itself (the requester is this minion's id), with the same policy as
    :py:func:`sign_remote`. Refuses peer-publish calls from other minions. Returns
    ``{"certificate": PEM, "ca": CA PEM}``.

    config
        The settings (``k8s/map.jinja``); loaded with ``k8s.config`` when omitted.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.sign_local "$(cat admin.csr)" admin
    """
    _refuse_peer(kwargs, "sign_local")
    return _issue(_ca_config(config), str(__opts__["id"]), csr, identity)


def fetch_secret_remote(name, **kwargs):
    """
    Return a cluster secret (``service-account`` or ``encryption-config``) to a minion with the master role in
    ``k8s:nodes``, called through peer publish on the CA minion. Returns ``{"secret": value}``.

    CLI Example:

    .. code-block:: bash

        salt-call publish.publish master01 k8s_pki.fetch_secret_remote arg="[service-account]"
    """
    requester = _requester(kwargs, "fetch_secret_remote")
    config = _ca_config()
    if name not in SECRETS:
        raise CommandExecutionError(
            f"unknown secret '{name}' requested by minion '{requester}'; known secrets: {', '.join(SECRETS)}"
        )
    if requester not in _cluster(config).get("masters", []):
        raise CommandExecutionError(
            f"minion '{requester}' may not fetch secret '{name}': only nodes with the master role in k8s:nodes may"
        )
    return {"secret": _read_secret(config, name)}


def fetch_secret_local(name, config=None, **kwargs):
    """
    Return a cluster secret on the CA minion itself: ``{"secret": value}``. Refuses peer-publish calls from other
    minions.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.fetch_secret_local service-account
    """
    _refuse_peer(kwargs, "fetch_secret_local")
    return {"secret": _read_secret(_ca_config(config), name)}


# --------------------------------------------------------------------------------------------------------------------
# Node report
# --------------------------------------------------------------------------------------------------------------------
def _status(config, minion_id, now=None):
    now = now or _now()
    pki_dir = config["paths"]["pki_dir"]
    renew_days = (config.get("pki") or {}).get("renew_days", 30)
    files = layout(config)
    by_path = {spec["cert"]: identity for identity, spec in files["certificates"].items()}
    ents = entitlements(config, minion_id)
    report = {}
    for root, dirs, names in os.walk(pki_dir):
        dirs.sort()
        for fname in sorted(names):
            if not fname.endswith((".crt", ".pem")):
                continue
            path = os.path.join(root, fname)
            try:
                with open(path, encoding="ascii") as fh:
                    pem = fh.read()
                info = certificate_info(pem, now=now)
            except (OSError, UnicodeDecodeError, CommandExecutionError, SaltInvocationError) as exc:
                report[path] = {"state": "unreadable", "reasons": [str(exc)]}
                continue
            identity = by_path.get(path)
            expected = {}
            if identity in ents:
                expected = dict(ents[identity])
                ca_file = files["certificates"][identity]["ca_file"]
                if os.path.exists(ca_file):
                    with open(ca_file, encoding="ascii") as fh:
                        expected["ca_pem"] = fh.read()
            reasons = needs_renewal(pem, expected, renew_days, now=now)
            state = ("expired" if any(r.startswith("expired") for r in reasons)
                     else "renew" if reasons else "OK")
            report[path] = {
                "identity": identity,
                "subject": info["subject"],
                "issuer": info["issuer"],
                "dns": info["dns"],
                "ips": info["ips"],
                "not_after": info["not_after"],
                "days_left": info["days_left"],
                "state": state,
                "reasons": reasons,
            }
    return report


def status(config=None):
    """
    Report every certificate (``*.crt``, ``*.pem``) under ``k8s:paths:pki_dir`` on this node: subject, issuer,
    SANs, not-after, days left and a state: ``OK``, ``renew`` (with the reasons) or ``expired``. Certificates kubesalt
    manages are also compared with this minion's entitlements and their CA bundle.

    CLI Example:

    .. code-block:: bash

        salt '*' k8s_pki.status
    """
    if config is None:
        config = __salt__["k8s.config"]()
    return _status(config, __opts__["id"])
