"""
kubesalt PKI states: thin wrappers over the ``k8s_pki`` execution module (compare, then act, then report).

- ``ca_present`` (on the CA minion): a CA key and self-signed certificate; renewed with the same key when due.
- ``private_key_present``: a private key file.
- ``certificate_managed`` (on every node): a key generated on the node (it never leaves it), and a certificate
  issued by the CA minion for one identity, reissued when it no longer matches the policy or is due for renewal.
- ``secret_present`` (on masters): a cluster secret (service-account key, encryption config) copied from the CA minion.

Every state computes the difference first; with ``test=True`` it returns ``result: None`` and the changes it would
make, and touches nothing. Files are written atomically (temporary file in the same directory, fsync, rename): keys
and secrets and certificates 0600 (CIS 1.1.20/1.1.21; every reader is root); directories it creates are 0755 (the
CA directory 0700).

The examples of each state take their paths from the PKI layout, as the formulas do:
``{%- set pki = salt["k8s_pki.layout"](k8s) %}`` with ``k8s`` from ``k8s/map.jinja``.
"""

import os

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import files, outcome, peer, pki, rotation, seal, x509

__virtualname__ = "k8s_pki"


def __virtual__():
    if "k8s_pki.sign_local" in __salt__:
        return __virtualname__
    return (False, "k8s_pki states: the k8s_pki execution module is not loaded (is 'cryptography' installed?)")


def _fix_modes(paths, changes, test):
    """Set the modes of existing files that are not rewritten; record them under changes['mode']."""
    for path, want in paths:
        have = files.file_mode(path) if path else None
        if have is not None and have != want:
            changes.setdefault("mode", {})[path] = {"old": f"{have:04o}", "new": f"{want:04o}"}
            if not test:
                os.chmod(path, want)


def _config(config):
    return config if config is not None else __salt__["k8s.config"](validate=True)


def _key_info(path, pem):
    try:
        return x509.private_key_info(pem)
    except CommandExecutionError as exc:
        raise CommandExecutionError(
            f"key {path}: {exc}; refusing to overwrite it (move it away to start over)"
        ) from None


def _peer(ca_minion, fun, arg, timeout):
    return peer.call(__salt__["publish.publish"], __opts__["id"], ca_minion, fun, arg, timeout)


# --------------------------------------------------------------------------------------------------------------------
# States
# --------------------------------------------------------------------------------------------------------------------
def ca_present(name, key, common_name, key_type="ecdsa-p256", days=3650, renew_days=30):
    """
    Ensure a CA exists on the CA minion: a private key (``key``, 0600, in a 0700 directory) and a self-signed CA
    certificate (``name``, 0600). A due certificate (see ``k8s_pki.needs_renewal``: expiry, ``renew_days``, two
    thirds of the lifetime) is re-signed with the same key and name, so everything it issued keeps verifying. An
    existing key is never replaced and an existing CA is never renamed (either would orphan every certificate it
    issued; the comment says when they differ from the arguments), and a certificate without its key is an error,
    not a reason to start a new CA. Refuses a key directory that group or others can access.

    name
        Path of the CA certificate.
    key
        Path of the CA private key.
    common_name
        Subject CN of the CA.
    key_type
        Type of a new key: ecdsa-p256, rsa-2048, rsa-3072 or rsa-4096.
    days
        Lifetime of the CA certificate.
    renew_days
        Re-sign when fewer days than this are left.

    .. code-block:: jinja

        kubernetes-ca authority:
          k8s_pki.ca_present:
            - name: {{ pki.cas["kubernetes-ca"].cert }}
            - key: {{ pki.cas["kubernetes-ca"].key }}
            - common_name: kubernetes
    """
    ret = outcome.new(name)
    test = __opts__["test"]
    try:
        key_dir = os.path.dirname(os.path.abspath(key))
        if os.path.isdir(key_dir):
            __salt__["k8s_pki.check_private_dir"](key_dir)
        key_pem, cert_pem = files.read_text(key), files.read_text(name)
        changes, notes, key_info = {}, [], None
        if key_pem is None:
            if cert_pem is not None:
                raise CommandExecutionError(
                    f"CA certificate {name} exists but its key {key} is missing; refusing to create a new CA over "
                    f"it (nothing it issued would verify any more). Restore {key}, or remove {name} to start a new CA"
                )
            changes["key"] = f"new {key_type} key"
        else:
            key_info = _key_info(key, key_pem)
            if key_info["key_type"] != key_type:
                notes.append(f"The CA key is {key_info['key_type']}, not {key_type}: CA keys are never replaced.")
        if cert_pem is None:
            changes["certificate"] = {"new": f"CN={common_name}, {days} days"}
        else:
            info = x509.certificate_info(cert_pem)
            if key_info and info["public_key_fingerprint"] != key_info["public_key_fingerprint"]:
                raise CommandExecutionError(
                    f"CA certificate {name} does not belong to the key {key}; refusing to replace either"
                )
            if info["subject"]["cn"] != common_name:
                notes.append(f"The CA is named '{info['subject']['cn']}', not '{common_name}': a CA is never renamed.")
                common_name = info["subject"]["cn"]
            reasons = x509.needs_renewal(cert_pem, {"is_ca": True}, renew_days)
            if reasons:
                changes["certificate"] = {"renew": reasons, "old_not_after": info["not_after"]}
        rewritten = {p for p, c in ((key, "key"), (name, "certificate")) if c in changes}
        _fix_modes(
            [(p, m) for p, m in ((key, pki.FILE_MODE), (name, pki.FILE_MODE)) if p not in rewritten], changes, test
        )
        if changes and test:
            ret.update(
                result=None, changes=changes, comment=" ".join([f"CA '{common_name}' would be updated."] + notes)
            )
            return ret
        if key_pem is None:
            key_pem = x509.generate_private_key(key_type)
            files.write(key, key_pem, pki.FILE_MODE, dir_mode=pki.CA_DIR_MODE)
        if "certificate" in changes:
            cert_pem = x509.create_ca(key_pem, common_name, days=days)
            files.write(name, cert_pem, pki.FILE_MODE)
            changes["certificate"]["not_after"] = x509.certificate_info(cert_pem)["not_after"]
        ret["changes"] = changes
        ret["comment"] = " ".join([f"CA '{common_name}' {'updated' if changes else 'is present'}."] + notes)
        return ret
    except (CommandExecutionError, SaltInvocationError, OSError) as exc:
        return outcome.failed(ret, exc)


def private_key_present(name, key_type="ecdsa-p256", mode="0600"):
    """
    Ensure a private key exists at ``name`` with ``mode``. An existing key is kept, even of another type (the
    comment says so); a file that is not a PEM private key is an error and is left alone.

    name
        Path of the key.
    key_type
        Type of a new key: ecdsa-p256, rsa-2048, rsa-3072 or rsa-4096.
    mode
        File mode, default 0600.

    .. code-block:: jinja

        a node key:
          k8s_pki.private_key_present:
            - name: /etc/kubernetes/pki/example.key
            - key_type: ecdsa-p256
    """
    ret = outcome.new(name)
    test = __opts__["test"]
    try:
        want = files.parse_mode(mode)
        pem, changes, notes = files.read_text(name), {}, []
        if pem is None:
            changes["key"] = f"new {key_type} key"
        else:
            info = _key_info(name, pem)
            if info["key_type"] != key_type:
                notes.append(f"The key is {info['key_type']}, not {key_type}; existing keys are not replaced.")
            _fix_modes([(name, want)], changes, test)
        if changes and test:
            ret.update(result=None, changes=changes, comment=" ".join([f"Key {name} would be updated."] + notes))
            return ret
        if pem is None:
            files.write(name, x509.generate_private_key(key_type), want)
        ret["changes"] = changes
        ret["comment"] = " ".join([f"Key {name} {'updated' if changes else 'is present'}."] + notes)
        return ret
    except (CommandExecutionError, SaltInvocationError, OSError) as exc:
        return outcome.failed(ret, exc)


def _assess(config, identity, name, key, ca_file):
    """
    What this node's ``identity`` certificate at ``name`` (key ``key``, bundle ``ca_file``) needs, without changing
    anything: ``{ent, key_pem, cert_pem, ca_pem, new_key, reasons}`` (``new_key``: why a new key is made, or None;
    ``reasons``: why the certificate is (re)issued, empty when it is kept); None when this minion is not entitled to
    ``identity``. Raises for a key file that is not a key.
    """
    ent = pki.entitlements(config, __opts__["id"]).get(identity)
    if ent is None:
        return None
    settings = config["pki"]
    key_type, renew_days = settings["key_type"], settings["renew_days"]
    key_pem, cert_pem = files.read_text(key), files.read_text(name)
    ca_pem = files.read_text(ca_file) if ca_file else None
    new_key, reasons, key_info = None, [], {}
    if key_pem is None:
        new_key = "generated"
    else:
        key_info = _key_info(key, key_pem)
        if key_info["key_type"] != key_type:
            new_key = f"replaced: {key_info['key_type']} -> {key_type} (k8s:pki:key_type)"
    if new_key and cert_pem is not None:
        reasons.append(f"key {new_key}")
    if cert_pem is None:
        reasons.append("no certificate")
    else:
        expected = dict(ent, ca_pem=ca_pem)
        if not new_key:
            expected["public_key_fingerprint"] = key_info["public_key_fingerprint"]
        reasons += x509.needs_renewal(cert_pem, expected, renew_days)
    if ca_file and ca_pem is None:
        reasons.append(f"no CA bundle at {ca_file}")
    if reasons and not new_key and settings["rotate_keys"]:
        new_key = "rotated (k8s:pki:rotate_keys)"
    return {
        "ent": ent,
        "key_pem": key_pem,
        "cert_pem": cert_pem,
        "ca_pem": ca_pem,
        "new_key": new_key,
        "reasons": reasons,
    }


# Replies of the CA minion for this node's other due certificates, kept for their own states in this run.
_WAITING = "k8s_pki.issued_for_later"


def _request(config, plan):
    """``(key PEM, CSR PEM)`` for a due certificate: a new key when ``plan`` says so, else the key on disk."""
    ent = plan["ent"]
    key_pem = x509.generate_private_key(config["pki"]["key_type"]) if plan["new_key"] else plan["key_pem"]
    return key_pem, x509.create_csr(key_pem, ent["cn"], ent["o"], ent["dns"], ent["ips"])


def _issued(config, identity, paths, plan, timeout):
    """
    ``(key PEM, reply)`` for a due certificate. The CA minion signs its own with ``k8s_pki.sign_local``. Any other
    node sends one ``k8s_pki.sign_batch_remote`` for this certificate and every other one of its certificates that
    is due at its ``k8s_pki.layout`` paths; the replies for the others wait in ``__context__`` (this job's memory
    only) and are taken by their own states, when those find the same paths, policy and key plan.
    """
    me, ca_minion = __opts__["id"], config["cluster"]["ca_minion"]
    if me == ca_minion:
        key_pem, csr = _request(config, plan)
        return key_pem, __salt__["k8s_pki.sign_local"](csr, identity, config=config)
    waiting = __context__.setdefault(_WAITING, {})
    held = waiting.pop(identity, None)
    if (
        held
        and held["paths"] == paths
        and held["ent"] == plan["ent"]
        and bool(held["new_key"]) == bool(plan["new_key"])
        and (plan["new_key"] or held["key_pem"] == plan["key_pem"])
    ):
        return held["key_pem"], held["reply"]
    batch = {identity: (paths, plan)}
    layout = pki.layout(config)["certificates"]
    for other in sorted(pki.entitlements(config, me)):
        spec = layout[other]
        if other in batch or other in waiting:
            continue
        try:
            due = _assess(config, other, spec["cert"], spec["key"], spec["ca_file"])
        except (CommandExecutionError, SaltInvocationError, OSError):
            continue  # its own state reports it
        if due and due["reasons"]:
            batch[other] = ((spec["cert"], spec["key"], spec["ca_file"]), due)
    keys, csrs = {}, {}
    for name, (_paths, due) in batch.items():
        keys[name], csrs[name] = _request(config, due)
    reply = _peer(ca_minion, "k8s_pki.sign_batch_remote", [peer.named(requests=csrs)], timeout)
    for name, (other_paths, due) in batch.items():
        if name != identity and isinstance(reply.get(name), dict):
            waiting[name] = {
                "paths": other_paths,
                "ent": due["ent"],
                "new_key": due["new_key"],
                "key_pem": keys[name],
                "reply": reply[name],
            }
    mine = reply.get(identity)
    if not isinstance(mine, dict):
        raise CommandExecutionError(
            f"CA minion '{ca_minion}' replied to k8s_pki.sign_batch_remote without the '{identity}' certificate: "
            f"{sorted(reply)}"
        )
    return keys[identity], mine


def certificate_managed(name, key, identity, config=None, ca_file=None, timeout=30):
    """
    Ensure this node holds a valid certificate for ``identity`` as the policy (``k8s_pki.entitlements`` for this
    minion id) describes it. The private key is generated here (0600) and never sent anywhere; when the certificate
    is missing, does not match the policy, the key or the CA bundle, or is due for renewal, a CSR is sent to the CA
    minion: ``k8s_pki.sign_local`` when this minion is the CA minion, otherwise ``k8s_pki.sign_batch_remote``
    through peer publish. That one request carries every certificate of this node that is due (those this minion is
    entitled to, at their ``k8s_pki.layout`` paths): the replies for the others wait in the run's ``__context__``
    (with the keys made for them, never written or returned) until their own states take, check and write them, so
    a node costs the CA minion one job, not one per certificate. A new key is made when there is none, when its type
    differs from ``k8s:pki:key_type``, or on renewal with ``k8s:pki:rotate_keys``. Nothing is written unless the CA's
    reply verifies against the new key and CA and matches the policy.

    name
        Path of the certificate (0600).
    key
        Path of the private key (0600).
    identity
        One of ``k8s_pki.identities``.
    config
        The settings from ``k8s/map.jinja``; loaded with ``k8s.config`` when omitted.
    ca_file
        Where to write the issuing CA's certificate (0600); also used to check that the certificate was issued by it.
    timeout
        Seconds to wait for the CA minion's reply.

    .. code-block:: jinja

        kubelet certificate:
          k8s_pki.certificate_managed:
            - name: {{ pki.certificates.kubelet.cert }}
            - key: {{ pki.certificates.kubelet.key }}
            - ca_file: {{ pki.certificates.kubelet.ca_file }}
            - identity: kubelet
            - config: {{ k8s | json }}
    """
    ret = outcome.new(name)
    test, me = __opts__["test"], __opts__["id"]
    try:
        config = _config(config)
        known = pki.identities()
        if identity not in known:
            raise SaltInvocationError(f"identity: unknown certificate identity '{identity}'; known: {', '.join(known)}")
        plan = _assess(config, identity, name, key, ca_file)
        if plan is None:
            raise CommandExecutionError(
                f"minion '{me}' is not entitled to the '{identity}' certificate by its roles in k8s:nodes "
                f"(it may hold: {', '.join(pki.entitlements(config, me)) or 'nothing'})"
            )
        ent, new_key, reasons = plan["ent"], plan["new_key"], plan["reasons"]
        changes = {}
        if new_key:
            changes["key"] = new_key
        if reasons:
            changes["certificate"] = {"reasons": reasons}
        rewritten = ({key} if new_key else set()) | ({name} if reasons else set())  # the bundle may stay as it is
        _fix_modes(
            [
                (p, m)
                for p, m in ((key, pki.FILE_MODE), (name, pki.FILE_MODE), (ca_file, pki.FILE_MODE))
                if p and p not in rewritten
            ],
            changes,
            test,
        )
        if not reasons:
            ret["changes"] = changes
            ret["result"] = None if (changes and test) else True
            info = x509.certificate_info(plan["cert_pem"])
            ret["comment"] = f"Certificate '{identity}' is valid until {info['not_after']}."
            return ret
        ca_minion = config["cluster"]["ca_minion"]
        if test:
            ret.update(
                result=None,
                changes=changes,
                comment=f"Certificate '{identity}' would be issued by CA minion '{ca_minion}'.",
            )
            return ret

        key_pem, reply = _issued(config, identity, (name, key, ca_file), plan, timeout)
        key_info = x509.private_key_info(key_pem)
        cert, ca = reply.get("certificate"), reply.get("ca")
        if not cert or not ca:
            raise CommandExecutionError(f"CA minion '{ca_minion}' replied without a certificate and CA: {reply!r:.200}")
        problems = x509.needs_renewal(
            cert, dict(ent, ca_pem=ca, public_key_fingerprint=key_info["public_key_fingerprint"]), 0
        )
        if problems:
            raise CommandExecutionError(
                f"CA minion '{ca_minion}' issued a '{identity}' certificate that does not match what minion '{me}' "
                f"expects ({'; '.join(problems)}); nothing was written. The k8s:nodes pillar seen by the two "
                "minions probably differs: run saltutil.refresh_pillar on both"
            )
        if new_key:
            files.write(key, key_pem, pki.FILE_MODE)
        files.write(name, cert, pki.FILE_MODE)
        if ca_file and ca != plan["ca_pem"]:
            files.write(ca_file, ca, pki.FILE_MODE)
            changes["ca_file"] = f"{ca_file} updated"
        info = x509.certificate_info(cert)
        changes["certificate"].update(serial=info["serial"], not_after=info["not_after"])
        ret["changes"] = changes
        ret["comment"] = f"Certificate '{identity}' issued by CA minion '{ca_minion}'."
        return ret
    except (CommandExecutionError, SaltInvocationError, OSError) as exc:
        return outcome.failed(ret, exc)


def secret_present(name, secret, config=None, timeout=30):
    """
    Ensure a cluster secret (``service-account``: the service-account signing key; ``encryption-config``: the
    API server's EncryptionConfiguration) is at ``name`` (0600). On the CA minion the secret is generated in the CA
    directory the first time (and never rotated by this state) and copied from there; other minions fetch it with
    ``k8s_pki.fetch_secret_remote``, which the CA minion grants to masters only, sealed to a one-time key of this
    minion (``kubesalt.seal``): the secret never passes through Salt in the clear. Use ``name`` = the secret's
    ``source`` from ``k8s_pki.layout`` on the CA minion to only create it there.

    name
        Where to write the secret.
    secret
        ``service-account`` or ``encryption-config``.
    config
        The settings from ``k8s/map.jinja``; loaded with ``k8s.config`` when omitted.
    timeout
        Seconds to wait for the CA minion's reply.

    .. code-block:: jinja

        cluster secret service-account:
          k8s_pki.secret_present:
            - name: {{ pki.secrets["service-account"].path }}
            - secret: service-account
            - config: {{ k8s | json }}
    """
    ret = outcome.new(name)
    test, me = __opts__["test"], __opts__["id"]
    try:
        config = _config(config)
        secrets = pki.layout(config)["secrets"]
        if secret not in secrets:
            raise SaltInvocationError(f"secret: unknown cluster secret '{secret}'; known: {', '.join(secrets)}")
        source = secrets[secret]["source"]
        ca_minion = config["cluster"]["ca_minion"]
        changes, value = {}, None
        if me == ca_minion:
            ca_dir = os.path.dirname(os.path.abspath(source))
            if os.path.isdir(ca_dir):
                __salt__["k8s_pki.check_private_dir"](ca_dir)
            if not os.path.exists(source):
                changes["source"] = f"new secret '{secret}' at {source}"
                if not test:
                    value = pki.generate_secret(secret, config["pki"]["key_type"])
                    files.write(source, value, pki.FILE_MODE, dir_mode=pki.CA_DIR_MODE)
            else:
                value = __salt__["k8s_pki.fetch_secret_local"](secret, config=config)["secret"]
        else:
            # Sealed to a one-time key: the reply passes through Salt's job cache and event bus as ciphertext.
            private, public = seal.keypair()
            reply = _peer(ca_minion, "k8s_pki.fetch_secret_remote", [secret, peer.named(recipient=public)], timeout)
            value = seal.unseal(reply.get("sealed"), private, seal.context(secret, me))
        copy = me != ca_minion or os.path.abspath(name) != os.path.abspath(source)
        if copy and (value is None or files.read_text(name) != value):
            changes["secret"] = f"{name} written (content not shown)"
        else:
            _fix_modes([(name, pki.FILE_MODE)], changes, test)
        if changes and test:
            ret.update(result=None, changes=changes, comment=f"Secret '{secret}' would be updated.")
            return ret
        if "secret" in changes:
            files.write(name, value, pki.FILE_MODE)
        ret["changes"] = changes
        ret["comment"] = f"Secret '{secret}' {'updated' if changes else 'is present'}."
        return ret
    except (CommandExecutionError, SaltInvocationError, OSError) as exc:
        return outcome.failed(ret, exc)


def public_key_present(name, key, mode="0600"):
    """
    Ensure ``name`` holds the public key (PEM SubjectPublicKeyInfo) of the private key file ``key``, followed by the
    public keys that file carries after its private key (a service-account key rotation, ``kubesalt.rotation``);
    rewritten when they change. kube-apiserver verifies service-account tokens with them
    (``--service-account-key-file``).

    name
        Where to write the public key.
    key
        Path of the PEM private key (it must exist, except under test=True).
    mode
        Of the public key file.

    .. code-block:: jinja

        service-account public key:
          k8s_pki.public_key_present:
            - name: {{ pki.public_keys["service-account"] }}
            - key: {{ pki.secrets["service-account"].path }}
    """
    ret = outcome.new(name)
    test = __opts__["test"]
    try:
        private = files.read_text(key)
        if private is None:
            if test:
                ret.update(
                    result=None,
                    changes={"public_key": f"{name} from {key}"},
                    comment=f"Public key of {key} would be written (the private key does not exist yet).",
                )
                return ret
            raise CommandExecutionError(f"private key {key} does not exist")
        value = rotation.verification_keys(private, key)
        changes = {}
        if files.read_text(name) != value:
            changes["public_key"] = f"{name} from {key}"
        else:
            _fix_modes([(name, files.parse_mode(mode))], changes, test)
        if changes and test:
            ret.update(result=None, changes=changes, comment=f"Public key {name} would be updated.")
            return ret
        if "public_key" in changes:
            files.write(name, value, files.parse_mode(mode))
        ret["changes"] = changes
        ret["comment"] = f"Public key {name} {'updated' if changes else 'is up to date'}."
        return ret
    except (CommandExecutionError, SaltInvocationError, OSError) as exc:
        return outcome.failed(ret, exc)


def ca_backup_present(name, recipient="", push=False):
    """
    Ensure directory ``name`` on the CA minion holds an archive of the CA directory's current content
    (``k8s_pki.ca_backup``: 0600 in a 0700 directory, encrypted to ``recipient`` when given; a new archive is also
    pushed to the salt-master when ``push``). Unchanged CA files: no new archive, no changes.

    .. code-block:: jinja

        CA directory backed up:
          k8s_pki.ca_backup_present:
            - name: /var/backups/kubesalt/ca
            - recipient: {{ k8s.pki.backup.recipient | json }}
    """
    ret = outcome.new(name)
    try:
        wanted = os.path.join(name, __salt__["k8s_pki.ca_backup_name"](recipient=recipient or None))
        if os.path.exists(wanted):
            ret["comment"] = f"{wanted} holds the CA directory as it is"
            return ret
        changes = {"archive": wanted, "encrypted": bool(recipient), "pushed": bool(push)}
        if __opts__["test"]:
            ret.update(result=None, changes=changes, comment=f"would write {wanted}")
            return ret
        done = __salt__["k8s_pki.ca_backup"](directory=name, recipient=recipient or None, push=push)
        ret.update(
            changes=changes, comment=f"CA directory backed up to {done['path']}" + (" and pushed" if push else "")
        )
    except (CommandExecutionError, SaltInvocationError, OSError) as exc:
        return outcome.failed(ret, exc)
    return ret
