"""
Rotation of the cluster's long-lived secrets, as pure functions over the secrets' text (no Salt, no I/O): the
``k8s_rotate`` states read and write the files, these decide what the next phase looks like.

Encryption at rest (the ``encryption-config`` cluster secret, an EncryptionConfiguration whose first provider for
Secrets is ``secretbox``). A rotation to key ``<new>`` goes through phases that the file itself records, so a
stopped rotation resumes from the file alone:

- ``start``: ``<new>`` is not in the file (one key, the current one);
- ``added``: ``[<old>, <new>]`` -- every API server can read data written with ``<new>``, still writes ``<old>``;
- ``promoted``: ``[<new>, <old>]`` -- API servers write ``<new>`` and still read ``<old>``;
- ``done``: ``[<new>]`` -- once every Secret in etcd is stored under ``<new>``.

Service-account signing key (the ``service-account`` cluster secret): the signing private key (PEM), followed by
the public keys (``PUBLIC KEY`` PEM blocks) that API servers still accept tokens from. kube-apiserver and
kube-controller-manager sign with the first private key of the file (client-go's keyutil skips other PEM blocks);
``--service-account-key-file`` gets every public key (``k8s_pki.public_key_present``). The phases:

- ``idle``: the signing key alone;
- ``added``: the old signing key + the new key's public half; the new private key waits on the CA minion
  (``service-account.next.key``) -- every API server accepts tokens of both, all still signed with the old;
- ``switched``: the new signing key + the old key's public half -- new tokens from the new key, old tokens still
  accepted until ``drop``;
- back to ``idle`` with the new key alone once tokens have rolled (``drop``).
"""

import base64
import re
import secrets as _secrets

import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import x509

ENCRYPTION_PHASES = ("start", "added", "promoted", "done")
# The phases an orchestration step asks for, in order, and the file's phase each one leaves behind.
ENCRYPTION_STEPS = {"added": "added", "promoted": "promoted", "dropped": "done"}
SERVICE_ACCOUNT_STEPS = ("added", "switched", "dropped")
# etcd value prefix of data an encryption provider wrote: k8s:enc:<provider>:v1:<key name>:<ciphertext>.
_STORED = re.compile(r"^k8s:enc:([a-z0-9]+):v1:([^:]+):")
_KEY_NAME = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}\Z")
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.S)


# --------------------------------------------------------------------------------------------------------------------
# Encryption at rest
# --------------------------------------------------------------------------------------------------------------------
def check_key_name(name, what="rotate_to"):
    """``name`` when it can name a key of the EncryptionConfiguration; otherwise an error naming ``what``."""
    if not isinstance(name, str) or not _KEY_NAME.match(name):
        raise SaltInvocationError(
            f"{what}: {name!r} is not a key name (1-63 letters, digits, '-', '_' or '.', starting with a letter or "
            "digit), e.g. key2"
        )
    return name


def _secretbox(config, where):
    try:
        data = yaml.safe_load(config)
        for resource in data["resources"]:
            if "secrets" in resource["resources"]:
                first = resource["providers"][0]
                if "secretbox" not in first:
                    raise CommandExecutionError(
                        f"{where}: the first provider for secrets is {next(iter(first))!r}; kubesalt rotates "
                        "secretbox keys only"
                    )
                return data, first["secretbox"]["keys"]
    except (yaml.YAMLError, KeyError, TypeError, IndexError, StopIteration) as exc:
        raise CommandExecutionError(f"{where} is not an EncryptionConfiguration kubesalt wrote: {exc!r}") from exc
    raise CommandExecutionError(f"{where}: no provider list for secrets")


def encryption_keys(config, where="encryption config"):
    """The names of the secretbox keys for Secrets in the EncryptionConfiguration text ``config``, in order (the
    first encrypts, all decrypt)."""
    return [key["name"] for key in _secretbox(config, where)[1]]


def encryption_phase(config, new, where="encryption config"):
    """Where the rotation to key ``new`` stands in ``config``: ``start``, ``added``, ``promoted`` or ``done``
    (module docstring). Another rotation under way (two keys, neither ``new``) is an error naming it."""
    names = encryption_keys(config, where)
    if names == [new]:
        return "done"
    if len(names) == 1:
        return "start"
    if len(names) == 2 and new in names:
        return "added" if names[1] == new else "promoted"
    raise CommandExecutionError(
        f"{where} holds keys {names}: another rotation is under way; finish it first with rotate_to set to the key "
        f"it added (one of {names}). A new key is only added to a configuration with a single key"
    )


def encryption_step(config, new, step, where="encryption config"):
    """
    The EncryptionConfiguration text after orchestration step ``step`` (``added``, ``promoted`` or ``dropped``) of
    the rotation to key ``new``, and the phase before it: ``(text, phase)``. The text is ``config`` itself when the
    step is already done; a step asked for before the one it follows is an error that changes nothing.
    """
    check_key_name(new)
    if step not in ENCRYPTION_STEPS:
        raise SaltInvocationError(f"step: {step!r} is not one of {', '.join(ENCRYPTION_STEPS)}")
    phase = encryption_phase(config, new, where)
    have, want = ENCRYPTION_PHASES.index(phase), ENCRYPTION_PHASES.index(ENCRYPTION_STEPS[step])
    if have >= want:
        return config, phase
    if have < want - 1:
        raise CommandExecutionError(
            f"{where}: the rotation to '{new}' is at phase '{phase}'; step '{step}' comes after "
            f"'{ENCRYPTION_PHASES[want - 1]}'. Nothing was changed"
        )
    data, keys = _secretbox(config, where)
    if step == "added":
        keys.append({"name": new, "secret": base64.b64encode(_secrets.token_bytes(32)).decode()})
    elif step == "promoted":
        keys.reverse()
    else:
        keys[:] = [key for key in keys if key["name"] == new]
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False), phase


def stored_under(value):
    """What wrote an etcd value of the API server: ``<provider>:<key name>`` (e.g. ``secretbox:key2``) for an
    encryption provider, ``identity`` for data stored in the clear."""
    found = _STORED.match(value or "")
    return f"{found.group(1)}:{found.group(2)}" if found else "identity"


# --------------------------------------------------------------------------------------------------------------------
# Service-account signing key
# --------------------------------------------------------------------------------------------------------------------
def split_service_account(text, where="service-account key"):
    """``(private key PEM, [public key PEM, ...])`` of a service-account secret (module docstring)."""
    blocks = [(m.group(1), m.group(0).rstrip("\r\n") + "\n") for m in _PEM.finditer(text or "")]
    private = [pem for kind, pem in blocks if kind.endswith("PRIVATE KEY")]
    public = [pem for kind, pem in blocks if kind == "PUBLIC KEY"]
    if len(private) != 1 or not blocks[0][0].endswith("PRIVATE KEY"):
        raise CommandExecutionError(
            f"{where}: expected one private key first, then public keys only; found PEM blocks "
            f"{[kind for kind, _ in blocks]}"
        )
    return private[0], public


def service_account_secret(private, public=()):
    """The text of a service-account secret: the signing key, then the extra public keys accepted."""
    return private.rstrip("\n") + "\n" + "".join(p.rstrip("\n") + "\n" for p in public)


def verification_keys(text, where="service-account key"):
    """Every public key kube-apiserver accepts tokens from (``--service-account-key-file``): the signing key's,
    then the extra ones of the secret, each once."""
    private, public = split_service_account(text, where)
    keys = [x509.public_key(private)]
    for pem in public:
        if pem not in keys:
            keys.append(pem)
    return "".join(keys)


def _service_account_state(text, next_key, where):
    """``(phase, private, public, next_key)``; a next key that already signs (a ``switched`` step stopped before
    it removed the file) is no longer waiting, and one whose public half is not yet in the secret (an ``added`` step
    stopped before it wrote the secret) is waiting but not yet accepted (``idle``: ``added`` publishes it)."""
    private, public = split_service_account(text, where)
    if next_key and x509.public_key(next_key) == x509.public_key(private):
        next_key = None
    if next_key:
        return ("added" if x509.public_key(next_key) in public else "idle"), private, public, next_key
    return ("switched" if public else "idle"), private, public, None


def service_account_phase(text, next_key=None, where="service-account key"):
    """``idle``, ``added`` (a next key waits, ``next_key`` its text, and every API server is to accept it) or
    ``switched`` (signing with the new key, old public keys still accepted)."""
    return _service_account_state(text, next_key, where)[0]


def service_account_step(text, next_key, step, key_type, where="service-account key"):
    """
    ``(secret text, next key text or None, phase before)`` after step ``step`` (``added``, ``switched``,
    ``dropped``). ``added`` from ``idle`` makes a new key of ``key_type`` (or publishes the one already waiting);
    ``switched`` signs with the waiting key and keeps accepting the old one; ``dropped`` keeps the signing key only.
    A step that is already done returns its input; ``switched`` without an added key, or ``dropped`` while a key
    waits, is an error.
    """
    if step not in SERVICE_ACCOUNT_STEPS:
        raise SaltInvocationError(f"step: {step!r} is not one of {', '.join(SERVICE_ACCOUNT_STEPS)}")
    phase, private, public, waiting = _service_account_state(text, next_key, where)
    if step == "added":
        if phase != "idle":
            return text, waiting, phase
        new = waiting or x509.generate_private_key(key_type)
        return service_account_secret(private, [*public, x509.public_key(new)]), new, phase
    if step == "switched":
        if phase == "switched":
            return text, None, phase
        if phase == "idle":
            raise CommandExecutionError(
                f"{where}: no new key is accepted yet (phase idle); run the 'added' step first. Nothing was changed"
            )
        return service_account_secret(waiting, [x509.public_key(private)]), None, phase
    if phase == "added" or waiting:
        raise CommandExecutionError(
            f"{where}: a new key was added but signing has not switched to it; run the 'switched' step first. "
            "Nothing was changed"
        )
    return (service_account_secret(private), None, phase) if public else (text, None, phase)
