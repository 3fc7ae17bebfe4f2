"""
Rotation of the cluster's long-lived secrets: the encryption-at-rest key and the service-account signing key
(README "Rotating the cluster's secrets"; the phases are in ``kubesalt.rotation``). The orchestrations
``k8s.rotate.encryption`` and ``k8s.rotate.service-account`` drive the ``k8s_rotate`` states; this module is what
they ask the cluster:

- :py:func:`secrets_storage`: how every Secret is stored in etcd -- under which provider and key (read from etcd
  itself: the API server only ever shows Secrets decrypted);
- :py:func:`reencrypt_secrets`: write back, through the API, every Secret not yet stored under the key the API
  servers now encrypt with.

Both return Secret names and counts only, never their data, so nothing secret reaches Salt's job cache or events.
"""

import logging

from salt.exceptions import CommandExecutionError

from kubesalt import files, pki, rotation

log = logging.getLogger(__name__)

__virtualname__ = "k8s_rotate"

# Where kube-apiserver keeps Secrets in etcd (its default --etcd-prefix, which kubesalt does not change).
SECRETS_PREFIX = "/registry/secrets/"


def __virtual__():
    return __virtualname__


def _config(config=None):
    return config if config is not None else __salt__["k8s.config"](validate=True)


def encryption_config_path(config):
    """
    The EncryptionConfiguration this minion holds: the source on the CA minion (where a rotation changes it),
    otherwise a master's copy.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_rotate.encryption_config_path "$(salt-call --out=json k8s.config | jq .local)"
    """
    spec = pki.layout(config)["secrets"]["encryption-config"]
    return spec["source"] if config["cluster"]["is_ca"] else spec["path"]


def encryption_keys(config=None):
    """
    The names of the encryption keys for Secrets in this minion's EncryptionConfiguration, the one that encrypts
    first (names only).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_rotate.encryption_keys
    """
    config = _config(config)
    path = encryption_config_path(config)
    text = files.read_text(path)
    if text is None:
        raise CommandExecutionError(f"{path} does not exist on this minion (apply k8s.pki first)")
    return rotation.encryption_keys(text, path)


def secrets_storage(config=None):
    """
    How every Secret is stored in etcd: ``{"total": n, "by_key": {"secretbox:key2": n, "identity": n, ...},
    "secrets": {"<namespace>/<name>": "secretbox:key2", ...}}``. Read from etcd with this minion's etcd client
    certificate (``k8s_etcd.connection_defaults``); the values never leave this function.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_rotate.secrets_storage
    """
    config = _config(config)
    conn = __salt__["k8s_etcd.connection_defaults"](config)
    stored = {
        key[len(SECRETS_PREFIX) :]: rotation.stored_under(value)
        for key, value in __salt__["k8s_etcd.ls"](SECRETS_PREFIX, **conn).items()
    }
    by_key = {}
    for under in stored.values():
        by_key[under] = by_key.get(under, 0) + 1
    return {"total": len(stored), "by_key": by_key, "secrets": stored}


def reencrypt_secrets(key, config=None, test=False):
    """
    Write back through the API every Secret that etcd does not hold under secretbox key ``key``, then read etcd
    again: ``{"rewritten": [...], "gone": [...], "left": {name: stored under}, "total": n}``. Every API server must
    already encrypt with ``key`` (the rotation's ``promoted`` phase, every master restarted), or the Secrets come
    back under the old key and stay in ``left``. With ``test=True`` only ``left`` (what would be rewritten).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_rotate.reencrypt_secrets key2
    """
    config = _config(config)
    want = f"secretbox:{rotation.check_key_name(key, 'key')}"
    before = secrets_storage(config)["secrets"]
    pending = sorted(name for name, under in before.items() if under != want)
    if test or not pending:
        return {"rewritten": [], "gone": [], "left": {n: before[n] for n in pending}, "total": len(before)}
    done = __salt__["k8s_kube.rewrite"](config, "Secret", names=pending)
    after = secrets_storage(config)["secrets"]
    left = {name: under for name, under in sorted(after.items()) if under != want}
    log.info("k8s_rotate: %d Secret(s) rewritten, %d left under another key", len(done["rewritten"]), len(left))
    return dict(done, left=left, total=len(after))
