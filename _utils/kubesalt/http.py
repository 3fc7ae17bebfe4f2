"""
HTTPS with client certificates for kubesalt's own API clients (etcd's v3 JSON gateway, the Kubernetes API): one
session recipe and one way of telling an operator why a connection failed.

Artifact downloads use their own session (``kubesalt.download``): they honour the environment's proxies and CA
bundle, while cluster traffic never does.
"""

import os
import re
import ssl

import requests  # a dependency of Salt itself
from salt.exceptions import SaltInvocationError


def short(text):
    """The useful part of a requests/urllib3 error: the OS error, or what caused the retry failure."""
    text = " ".join(str(text).split())
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    cause = re.search(r"\(Caused by (.*)\)$", text)
    text = errno.group(1).strip() if errno else cause.group(1) if cause else text
    return text if len(text) <= 300 else text[:297] + "..."


def check_tls_files(ca, cert=None, key=None, what="server"):
    """Refuse missing or unusable TLS files up front, naming them (instead of one TLS error per request)."""
    if not ca:
        raise SaltInvocationError(f"no CA file given (ca=...); it verifies the {what} certificate")
    if bool(cert) != bool(key):
        raise SaltInvocationError(f"client certificate and key go together: got cert={cert!r} and key={key!r}")
    for label, path in (("CA file", ca), ("client certificate", cert), ("client key", key)):
        if path and not os.path.isfile(path):
            raise SaltInvocationError(f"{what} {label} {path} does not exist")
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, ValueError) as exc:
        raise SaltInvocationError(f"{what} CA file {ca} holds no usable PEM certificate: {exc}") from exc
    if cert:
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise SaltInvocationError(
                f"client certificate {cert} and key {key} are not a usable pair (bad PEM, or the key does not match "
                f"the certificate): {exc}"
            ) from exc


def session(ca, cert=None, key=None):
    """A requests session that verifies the server with ``ca`` and presents ``cert``/``key``; proxies and
    ``REQUESTS_CA_BUNDLE`` from the environment are ignored (cluster traffic goes straight to the cluster)."""
    sess = requests.Session()
    sess.trust_env = False
    sess.verify = ca
    sess.cert = (cert, key) if cert else None
    return sess


def client_cert_reason(text, cert):
    """Why the server dropped the handshake, when it looks like client-certificate trouble; else None."""
    lowered = str(text).lower()
    alert = any(
        m in lowered
        for m in ("certificate required", "bad certificate", "unknown ca", "certificate unknown", "handshake failure")
    )
    # Go servers (etcd, kube-apiserver) often close the connection without an alert: Python sees an EOF or a reset.
    dropped = any(m in lowered for m in ("eof occurred", "unexpected eof", "connection reset"))
    if not (alert or dropped):
        return None
    if not cert:
        return (
            f"the server closed the TLS connection ({short(text)}): it requires a client certificate and none "
            "was given (cert=..., key=...)"
        )
    return (
        f"the server {'' if alert else 'closed the TLS handshake, so it most likely '}refused client certificate "
        f"{cert} ({short(text)}): not signed by the CA it trusts, expired, or lacking the clientAuth usage"
    )


def failure_reason(exc, ca, cert, timeout, server="the server"):
    """An operator's explanation of a failed request (``exc`` from requests): TLS verification, a refused client
    certificate, a timeout or a connection error."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"TLS verification of the server certificate failed with CA file {ca}: {short(text)}; is {ca} the CA "
            f"that signed {server}'s certificate, and is the host among its SANs?"
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer within {timeout:g}s"
    reason = client_cert_reason(text, cert)
    if reason:
        return reason
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error: {short(text)}"
    return f"cannot connect: {short(text)}"


class Client:
    """
    The base of kubesalt's API clients: a session that verifies the server with ``ca`` and presents ``cert``/``key``,
    its TLS files checked up front. Use it as a context manager so the session is closed.
    """

    server_name = "the server"

    def __init__(self, ca, cert=None, key=None):
        check_tls_files(ca, cert, key, what=self.server_name)
        self.ca, self.cert, self.key = ca, cert, key
        self.session = session(ca, cert, key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.session.close()

    def failure(self, exc, timeout):
        """Why a request failed, for an operator (see :py:func:`failure_reason`)."""
        return failure_reason(exc, self.ca, self.cert, timeout, self.server_name)
