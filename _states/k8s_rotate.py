"""
States of the secret rotations (README "Rotating the cluster's secrets"), each one phase of an orchestration:

- ``encryption_key`` (CA minion): the EncryptionConfiguration moved to the next phase of a rotation to a new key
  (``added``, ``promoted``, ``dropped``); ``dropped`` only once etcd holds every Secret under the new key;
- ``secrets_encrypted`` (CA minion): every Secret written back until etcd holds it under the new key;
- ``service_account_key`` (CA minion): the service-account signing key moved to the next phase (``added``,
  ``switched``, ``dropped``).

The secrets are changed where ``k8s_pki.secret_present`` generated them, in the CA directory; masters then fetch
them sealed (``k8s.pki``), and the orchestration restarts their API servers one at a time (``k8s.control-plane``).
Changes name files, keys and Secrets only, never a key's value. Every phase is read back from the files themselves,
so a rotation that stopped resumes where it stopped, and a phase already reached changes nothing.
"""

import os

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import files, outcome, pki, rotation

__virtualname__ = "k8s_rotate"

# Beside the service-account key in the CA directory: the new key between the 'added' and 'switched' steps.
NEXT_SUFFIX = ".next"


def __virtual__():
    return __virtualname__


def _config(config):
    return config if config is not None else __salt__["k8s.config"](validate=True)


def _on_ca(config, secret, name):
    """The secret's source on the CA minion; refuses to run anywhere else, or on another file."""
    me, ca_minion = __opts__["id"], config["cluster"]["ca_minion"]
    source = pki.layout(config)["secrets"][secret]["source"]
    if me != ca_minion:
        raise SaltInvocationError(
            f"the {secret} rotation changes the secret on the CA minion '{ca_minion}', not on '{me}' (the "
            "k8s.rotate orchestrations target it)"
        )
    if name and os.path.abspath(name) != os.path.abspath(source):
        raise SaltInvocationError(f"name: {name!r} is not the {secret} secret of the CA directory ({source})")
    text = files.read_text(source)
    if text is None:
        raise CommandExecutionError(f"{source} does not exist: apply k8s.pki on the CA minion first")
    return source, text


def encryption_key(name, key, step, config=None):
    """
    Ensure the EncryptionConfiguration on the CA minion has reached ``step`` of the rotation to secretbox key
    ``key``: ``added`` (the new key second: read, not yet written), ``promoted`` (first: written, the old one still
    read) or ``dropped`` (the new key alone -- refused while etcd holds any Secret under another key). A step whose
    predecessor has not happened is refused and changes nothing.

    name
        The ``encryption-config`` secret's source in the CA directory (``k8s_pki.layout``).
    key
        The new key's name (e.g. ``key2``); a rotation to another key under way is an error naming it.
    step
        ``added``, ``promoted`` or ``dropped``.

    .. code-block:: jinja

        encryption key key2 promoted:
          k8s_rotate.encryption_key:
            - name: {{ pki.secrets["encryption-config"].source }}
            - key: key2
            - step: promoted
    """
    ret = outcome.new(name)
    try:
        config = _config(config)
        source, text = _on_ca(config, "encryption-config", name)
        new, phase = rotation.encryption_step(text, key, step, source)
        if new == text:
            ret["comment"] = f"The rotation to encryption key '{key}' is at phase '{phase}': step '{step}' is done."
            return ret
        if step == "dropped":
            stored = __salt__["k8s_rotate.secrets_storage"](config)
            left = {n: under for n, under in stored["secrets"].items() if under != f"secretbox:{key}"}
            if left:
                shown = ", ".join(f"{n} ({u})" for n, u in sorted(left.items())[:10])
                raise CommandExecutionError(
                    f"{len(left)} of {stored['total']} Secrets are not stored under '{key}' in etcd ({shown}): "
                    f"dropping the old key would make them unreadable. Re-encrypt them first "
                    f"(k8s_rotate.secrets_encrypted). Nothing was changed"
                )
        keys = rotation.encryption_keys(new, source)
        ret["changes"] = {"keys": {"old": rotation.encryption_keys(text, source), "new": keys}}
        if __opts__["test"]:
            ret.update(result=None, comment=f"Encryption keys would become {keys} (step '{step}').")
            return ret
        files.write(source, new, 0o600)
        ret["comment"] = f"Encryption keys are now {keys} (step '{step}'); masters fetch them with k8s.pki."
        return ret
    except (CommandExecutionError, SaltInvocationError, OSError) as exc:
        return outcome.failed(ret, exc)


def secrets_encrypted(name, key, config=None):
    """
    Ensure etcd holds every Secret encrypted with secretbox key ``key``: each one stored under another key is
    written back through the API (``k8s_rotate.reencrypt_secrets``). Fails, naming them, when some are still not
    stored under it afterwards (an API server that does not encrypt with ``key`` yet).

    name
        A label for the state (e.g. ``Secrets under key2``).
    key
        The key every Secret must be stored under.

    .. code-block:: jinja

        Secrets under key2:
          k8s_rotate.secrets_encrypted:
            - key: key2
    """
    ret = outcome.new(name)
    try:
        config = _config(config)
        rotation.check_key_name(key, "key")
        found = __salt__["k8s_rotate.reencrypt_secrets"](key, config=config, test=True)
        if not found["left"]:
            ret["comment"] = f"All {found['total']} Secrets are stored under '{key}'."
            return ret
        if __opts__["test"]:
            ret.update(
                result=None,
                changes={"rewritten": sorted(found["left"])},
                comment=f"{len(found['left'])} of {found['total']} Secrets would be written back under '{key}'.",
            )
            return ret
        done = __salt__["k8s_rotate.reencrypt_secrets"](key, config=config)
        ret["changes"] = {"rewritten": done["rewritten"]}
        if done["gone"]:
            ret["changes"]["gone"] = done["gone"]
        if done["left"]:
            shown = ", ".join(f"{n} ({u})" for n, u in list(done["left"].items())[:10])
            raise CommandExecutionError(
                f"{len(done['left'])} Secrets are still not stored under '{key}' after being written back ({shown}): "
                f"does every API server encrypt with '{key}' (step 'promoted', every master restarted)?"
            )
        ret["comment"] = f"{len(done['rewritten'])} Secrets written back; all {done['total']} are under '{key}'."
        return ret
    except (CommandExecutionError, SaltInvocationError, OSError) as exc:
        return outcome.failed(ret, exc)


def service_account_key(name, step, config=None):
    """
    Ensure the service-account key on the CA minion has reached ``step``: ``added`` (a new key made and waiting
    beside the secret, ``<name>.next``; its public half accepted by every API server that fetches the secret),
    ``switched`` (the new key signs, the old one's public half still accepted) or ``dropped`` (the signing key
    alone: tokens of the old key are refused from then on -- run it once they have rolled, README).

    name
        The ``service-account`` secret's source in the CA directory (``k8s_pki.layout``).
    step
        ``added``, ``switched`` or ``dropped``.

    .. code-block:: jinja

        service-account key switched:
          k8s_rotate.service_account_key:
            - name: {{ pki.secrets["service-account"].source }}
            - step: switched
    """
    ret = outcome.new(name)
    try:
        config = _config(config)
        source, text = _on_ca(config, "service-account", name)
        next_path = source + NEXT_SUFFIX
        waiting = files.read_text(next_path)
        new, new_next, phase = rotation.service_account_step(text, waiting, step, config["pki"]["key_type"], source)
        changes = {}
        if new != text:
            old_keys, new_keys = (len(rotation.split_service_account(t, source)[1]) + 1 for t in (text, new))
            changes["secret"] = f"{source}: {old_keys} -> {new_keys} accepted key(s) (content not shown)"
        if new_next and new_next != waiting:
            changes["next"] = f"{next_path} written (content not shown)"
        if waiting is not None and new_next is None:
            changes["next"] = f"{next_path} removed"
        if not changes:
            ret["comment"] = f"The service-account key is at phase '{phase}': step '{step}' is done."
            return ret
        if __opts__["test"]:
            ret.update(result=None, changes=changes, comment=f"The service-account key would take step '{step}'.")
            return ret
        # The waiting key is on disk before the secret names it, and the secret signs with it before it is removed:
        # a step stopped half-way is taken again from what is on disk.
        if new_next and new_next != waiting:
            files.write(next_path, new_next, 0o600)
        if new != text:
            files.write(source, new, 0o600)
        if waiting is not None and new_next is None:
            os.remove(next_path)
        ret["changes"] = changes
        ret["comment"] = f"The service-account key took step '{step}'; masters fetch it with k8s.pki."
        return ret
    except (CommandExecutionError, SaltInvocationError, OSError) as exc:
        return outcome.failed(ret, exc)
