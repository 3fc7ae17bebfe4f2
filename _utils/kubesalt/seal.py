"""
Sealed hand-over of a cluster secret from the CA minion to a master, so that Salt never carries it in the clear.

A peer-publish reply travels through the salt-master: it lands in the master's job cache (24 h by default), in any
external job cache (returner) and on the master's event bus (where salt-api streams it). The master asking for a
secret therefore sends a one-time X25519 public key with its request and keeps the private half in memory; the CA
minion encrypts the secret to it -- X25519 key agreement with a one-time key of its own, HKDF-SHA256, AES-256-GCM --
binding the secret's name and the requesting minion id as associated data. What passes through Salt is ciphertext
only; a reply replayed to another minion, or for another secret, does not decrypt.
"""

import base64
import os

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - reported by the modules' __virtual__
    HAS_CRYPTOGRAPHY = False

_RAW = {"encoding": "Raw", "format": "Raw"}


def _raw(public_key):
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _unb64(text, what):
    try:
        return base64.b64decode(str(text), validate=True)
    except (ValueError, TypeError):
        raise SaltInvocationError(f"{what} is not base64") from None


def context(name, requester):
    """What a sealed secret is bound to: its name and the minion id it was sealed for."""
    return f"kubesalt cluster secret {name} for {requester}".encode()


def keypair():
    """A one-time key pair: (private key object, kept in memory; public key, base64 of its 32 raw bytes)."""
    private = X25519PrivateKey.generate()
    return private, _b64(_raw(private.public_key()))


def _key(shared, ephemeral, recipient, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=info).derive(shared)


def seal(value, recipient, info):
    """Encrypt ``value`` (text) to the base64 X25519 public key ``recipient``; bound to ``info``."""
    raw = _unb64(recipient, "recipient key")
    if len(raw) != 32:
        raise SaltInvocationError("recipient key: an X25519 public key is 32 bytes")
    peer = X25519PublicKey.from_public_bytes(raw)
    ephemeral = X25519PrivateKey.generate()
    epk = _raw(ephemeral.public_key())
    key = _key(ephemeral.exchange(peer), epk, raw, info)
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, str(value).encode(), info)
    return {
        "alg": "X25519-HKDF-SHA256-AES256GCM",
        "epk": _b64(epk),
        "nonce": _b64(nonce),
        "ciphertext": _b64(ciphertext),
    }


def unseal(sealed, private, info):
    """The text :py:func:`seal` encrypted for ``private`` under ``info``; raise when it is not that."""
    if not isinstance(sealed, dict) or sealed.get("alg") != "X25519-HKDF-SHA256-AES256GCM":
        raise CommandExecutionError(f"the CA minion's reply is not a sealed secret: {str(sealed)[:80]!r}")
    epk = _unb64(sealed.get("epk"), "sealed epk")
    recipient = _raw(private.public_key())
    key = _key(private.exchange(X25519PublicKey.from_public_bytes(epk)), epk, recipient, info)
    try:
        return (
            AESGCM(key)
            .decrypt(
                _unb64(sealed.get("nonce"), "sealed nonce"), _unb64(sealed.get("ciphertext"), "sealed ciphertext"), info
            )
            .decode()
        )
    except InvalidTag:
        raise CommandExecutionError(
            "the sealed secret does not decrypt: not sealed for this minion and secret"
        ) from None
