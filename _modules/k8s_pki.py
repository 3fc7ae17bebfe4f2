"""
kubesalt PKI on the minions: the CA minion signing for the others, and every node's certificate report.

Three layers, from the inside out:

1. ``kubesalt.x509``: pure functions over PEM strings (keys, CAs, CSRs, certificates, renewal reasons).
2. ``kubesalt.pki``: the policy -- :py:func:`entitlements` (which certificates a minion id may hold, from the
   ``k8s:nodes`` pillar only, never grains) and :py:func:`layout` (where every file lives).
3. This module, the Salt glue at the edge: :py:func:`sign_remote` / :py:func:`fetch_secret_remote` run on the CA
   minion when another minion calls them through peer publish; :py:func:`sign_local` / :py:func:`fetch_secret_local`
   when the CA minion asks for itself; :py:func:`status` reports the certificates on a node.

Design choices:

- **The CA ignores what a CSR asks for.** Subject, O and SANs come from :py:func:`entitlements` for the requesting
  minion id (``__pub_id``, set by the salt-master); the CSR contributes only its public key, and its signature is
  verified as proof of possession. A CSR that asks for something else (for example ``O=system:masters`` from a
  worker) is not refused: the request is logged as a warning and the certificate carries the policy's subject only.
  This mirrors ``x509_v2`` signing policies, whose fields override the request, and keeps a node whose pillar view is
  stale from being locked out (the node-side state then reports the difference).
- **Renewal**: a certificate is renewed when it is expired or not yet valid, has fewer than ``k8s:pki:renew_days``
  left, is past two thirds of its lifetime, differs from the policy (CN, O, SANs, usages), is not signed by the
  current CA (issuer name *and* signature checked), or does not match its private key.
- **No key material through Salt's job cache.** No function of this module takes a private key or returns one
  except :py:func:`fetch_secret_remote`, which hands a cluster secret to a master. Keys are generated and read by
  the states on the node that uses them.

Layout (see :py:func:`layout`): on every node ``<pki_dir>/<identity>.crt|.key`` and ``<pki_dir>/<ca>.crt``; on the
CA minion only, ``<ca_dir>/<ca>.crt|.key`` and the cluster secrets. ``ca_dir`` must be mode 0700 (no group/world
access) and its keys 0600; the CA refuses to sign otherwise. CA private keys are never returned by any function.
"""

import base64
import datetime
import gzip
import hashlib
import io
import json
import logging
import os
import stat
import tarfile

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import files, peer, pki, seal, x509

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
except ImportError:  # pragma: no cover - reported by __virtual__
    serialization = X25519PrivateKey = None

log = logging.getLogger(__name__)

__virtualname__ = "k8s_pki"


def __virtual__():
    if not x509.HAS_CRYPTOGRAPHY:
        return (False, "k8s_pki: the 'cryptography' Python library (>= 41) is not installed on this minion")
    return __virtualname__


# --------------------------------------------------------------------------------------------------------------------
# The policy and the certificate core, for operators
# --------------------------------------------------------------------------------------------------------------------
def identities():
    """
    The certificate identities kubesalt knows, in a stable order.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.identities
    """
    return pki.identities()


def entitlements(config, minion_id):
    """
    Every certificate ``minion_id`` may hold: ``{identity: {ca, cn, o, dns, ips, usages}}``, computed only from the
    roles and addresses in ``k8s:nodes`` (``config`` is the output of ``k8s.settings``), never from grains:

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
    return pki.entitlements(config, minion_id)


def layout(config):
    """
    Where kubesalt keeps PKI files, from ``k8s:paths`` (fs_root already applied by ``k8s.settings``): ``cas``
    (``{ca: {cert, key, common_name, bundle}}``; ``cert``/``key`` in ``ca_dir`` on the CA minion only, ``bundle`` the
    copy every node gets in ``pki_dir``), ``certificates`` (``{identity: {cert, key, ca_file}}``) and ``secrets``
    (``{secret: {source, path}}``: ``source`` in ``ca_dir`` on the CA minion, ``path`` on masters).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.layout "$(salt-call --out=json k8s.config | jq .local)"
    """
    return pki.layout(config)


def certificate_info(cert):
    """
    Describe a certificate -- a PEM string, or the path of a PEM file on this minion: subject and issuer (``cn``,
    ``o``), ``dns`` and ``ips`` SANs, ``usages``, ``is_ca``, ``not_before``/``not_after`` (ISO 8601, UTC),
    ``days_left``, ``serial`` (hex), ``key_type`` and ``public_key_fingerprint``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.certificate_info /etc/kubernetes/pki/apiserver.crt
    """
    text = str(cert)
    if "-----BEGIN" not in text:
        try:
            with open(text, encoding="ascii") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandExecutionError(f"certificate {cert}: cannot read it ({exc})") from None
    return x509.certificate_info(text)


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
    files = pki.layout(config)["cas"][ca]
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
    if identity not in pki.IDENTITIES:
        raise CommandExecutionError(
            f"unknown certificate identity '{identity}' requested by minion '{requester}'; "
            f"known identities: {', '.join(pki.IDENTITIES)}"
        )
    ents = pki.entitlements(config, requester)
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


def _requested_differs(asked, ent):
    """What a CSR asks for (``x509.csr_info``) that the policy will not put in the certificate (for the log)."""
    asked = {
        "cn": asked["cn"],
        "o": sorted(asked["o"]),
        "dns": sorted(d.lower() for d in asked["dns"]),
        "ips": sorted(asked["ips"]),
    }
    granted = {
        "cn": ent["cn"],
        "o": sorted(ent["o"]),
        "dns": sorted(d.lower() for d in ent["dns"]),
        "ips": sorted(x509.normal_ip(i) for i in ent["ips"]),
    }
    return {k: asked[k] for k in granted if asked[k] != granted[k]}


def _checked_request(config, requester, csr_pem, identity):
    """``(entitlement, csr_pem)`` for one request, or raise naming what is wrong: the identity must be one
    ``requester`` is entitled to, the CSR must parse and carry a valid signature (proof of possession) and a key at
    least as strong as ``k8s:pki:key_type``. What the CSR asks for beyond its key is logged and ignored."""
    ent = _entitlement_for(config, requester, identity)
    asked = x509.csr_info(csr_pem, f"CSR from minion '{requester}' for '{identity}'")
    wanted = config["pki"]["key_type"]
    if x509.strength(asked["key_type"]) < x509.strength(wanted):
        raise CommandExecutionError(
            f"minion '{requester}' sent a {asked['key_type']} key for '{identity}'; k8s:pki:key_type is {wanted}, "
            f"which needs at least {x509.strength(wanted)}-bit strength: refusing to sign a weaker key"
        )
    differs = _requested_differs(asked, ent)
    if differs:
        log.warning(
            "k8s_pki: minion '%s' asked for %s in its '%s' CSR; issuing the policy's subject/SANs instead",
            requester,
            differs,
            identity,
        )
    return ent, csr_pem


def _sign(config, requester, identity, ent, csr_pem, cas):
    """Sign a checked request with the policy's subject; ``cas`` caches ``{ca: (cert, key)}`` for one job."""
    if ent["ca"] not in cas:
        cas[ent["ca"]] = _read_ca(config, ent["ca"])
    ca_cert, ca_key = cas[ent["ca"]]
    cert = x509.sign_certificate(
        ca_cert,
        ca_key,
        csr_pem,
        ent["cn"],
        ent["o"],
        ent["dns"],
        ent["ips"],
        ent["usages"],
        days=config["pki"]["cert_days"],
    )
    log.info("k8s_pki: issued '%s' (CN=%s) to minion '%s'", identity, ent["cn"], requester)
    return {"certificate": cert, "ca": ca_cert}


def _issue(config, requester, csr_pem, identity):
    """Sign ``csr_pem`` for ``requester`` as ``identity`` with the policy's subject; the CSR gives only its key."""
    ent, csr_pem = _checked_request(config, requester, csr_pem, identity)
    return _sign(config, requester, identity, ent, csr_pem, {})


def _issue_batch(config, requester, requests):
    """
    Sign every ``{identity: CSR}`` of ``requests`` for ``requester``, all or nothing: each request is checked
    (:py:func:`_checked_request`) before any is signed, and the first that fails refuses the whole batch, naming the
    identity. Returns ``{identity: {"certificate", "ca"}}``.
    """
    fun = "k8s_pki.sign_batch_remote"
    if not isinstance(requests, dict) or not requests:
        raise SaltInvocationError(
            f"{fun}: minion '{requester}' sent {type(requests).__name__} {requests!r:.80}; expected a non-empty "
            "mapping {identity: CSR}"
        )
    if len(requests) > len(pki.IDENTITIES):
        raise SaltInvocationError(
            f"{fun}: minion '{requester}' sent {len(requests)} requests; there are only {len(pki.IDENTITIES)} "
            "certificate identities"
        )
    checked = {}
    for identity, csr_pem in sorted(requests.items(), key=lambda item: str(item[0])):
        try:
            if not isinstance(identity, str) or not isinstance(csr_pem, str):
                raise SaltInvocationError(f"identity and CSR must be strings, not {type(csr_pem).__name__}")
            checked[identity] = _checked_request(config, requester, csr_pem, identity)
        except (CommandExecutionError, SaltInvocationError) as exc:
            raise CommandExecutionError(
                f"{fun}: request for '{identity}' refused, so none of the {len(requests)} certificates asked for "
                f"by minion '{requester}' was signed: {exc}"
            ) from None
    cas = {}
    return {identity: _sign(config, requester, identity, ent, csr, cas) for identity, (ent, csr) in checked.items()}


def _read_secret(config, name):
    if name not in pki.SECRETS:
        raise CommandExecutionError(f"unknown secret '{name}'; known secrets: {', '.join(pki.SECRETS)}")
    source = pki.layout(config)["secrets"][name]["source"]
    if not os.path.exists(source):
        raise CommandExecutionError(
            f"secret '{name}' does not exist on the CA minion ({source}); apply k8s_pki.secret_present there first"
        )
    return _read_private_file(source, f"secret '{name}'")


def _ca_config(config=None, fetch=True):
    """The settings on the CA minion; refuses when this minion is not the CA minion. A peer-publish request reads
    them with ``fetch=False`` (``k8s.resolve``: no fileserver round trips)."""
    if config is None:
        config = __salt__["k8s.config"](validate=True, fetch=fetch)
    return peer.on_ca_minion(config, __opts__["id"], "send the request there")


def _peer_request(kwargs, fun, takes):
    """``(requester, settings)`` of a peer-publish request to ``fun`` on the CA minion: the caller (``__pub_id``), no
    named arguments but what ``fun`` ``takes``, and the CA minion's settings (read without fileserver round trips)."""
    requester = peer.requester(kwargs, fun)
    peer.refuse_arguments(kwargs, fun, takes)
    return requester, _ca_config(fetch=False)


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
    requester = peer.requester(kwargs, "k8s_pki.sign_remote")
    return _issue(_ca_config(fetch=False), requester, csr, identity)


def sign_batch_remote(requests, **kwargs):
    """
    Sign several CSRs in one peer-publish call, on the CA minion: ``requests`` is ``{identity: CSR}`` for the
    minion that calls this (``__pub_id``, set by the salt-master), each under the same policy as
    :py:func:`sign_remote`. All or nothing: every request is checked before any is signed, and one that the
    requester is not entitled to, or whose CSR is bad, refuses the whole batch with an error naming that identity.
    Returns ``{identity: {"certificate": PEM, "ca": CA PEM}}``. A node's ``k8s.pki`` sends all of its due
    certificates this way: one job on the CA minion per node instead of one per certificate.

    The salt-master must allow it: ``peer: {'.*': ['k8s_pki.sign_batch_remote']}``; never allow ``k8s_pki.*``.

    CLI Example:

    .. code-block:: bash

        salt-call publish.publish master01 k8s_pki.sign_batch_remote \\
            arg="[{__kwarg__: true, requests: {kubelet: '$(cat kubelet.csr)', kube-proxy: '$(cat kube-proxy.csr)'}}]"
    """
    requester, config = _peer_request(kwargs, "k8s_pki.sign_batch_remote", "it takes requests={identity: CSR} only")
    return _issue_batch(config, requester, requests)


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
    peer.refuse_peer(kwargs, "k8s_pki.sign_local", __opts__["id"])
    return _issue(_ca_config(config), str(__opts__["id"]), csr, identity)


def fetch_secret_remote(name, recipient=None, **kwargs):
    """
    Hand a cluster secret (``service-account`` or ``encryption-config``) to a minion with the master role in
    ``k8s:nodes``, called through peer publish on the CA minion. The secret is sealed to ``recipient``, the caller's
    one-time X25519 public key (base64; see ``kubesalt.seal``), and bound to the secret's name and the caller's id:
    the reply, which Salt keeps in its job cache and sends over its event bus, holds ciphertext only. Returns
    ``{"sealed": {...}}``.

    CLI Example:

    .. code-block:: bash

        salt-call publish.publish master01 k8s_pki.fetch_secret_remote \\
            arg='[service-account, {__kwarg__: true, recipient: <base64 X25519 key>}]'
    """
    requester, config = _peer_request(
        kwargs, "k8s_pki.fetch_secret_remote", "it takes a secret name and recipient=<key>"
    )
    if name not in pki.SECRETS:
        raise CommandExecutionError(
            f"unknown secret '{name}' requested by minion '{requester}'; known secrets: {', '.join(pki.SECRETS)}"
        )
    if requester not in config["cluster"]["masters"]:
        raise CommandExecutionError(
            f"minion '{requester}' may not fetch secret '{name}': only nodes with the master role in k8s:nodes may"
        )
    if not recipient:
        raise SaltInvocationError(
            f"k8s_pki.fetch_secret_remote: minion '{requester}' sent no recipient key; a secret is only handed over "
            "sealed to a one-time key of the requester (an older kubesalt on that minion?)"
        )
    return {"sealed": seal.seal(_read_secret(config, name), recipient, seal.context(name, requester))}


def fetch_secret_local(name, config=None, **kwargs):
    """
    Return a cluster secret on the CA minion itself: ``{"secret": value}``. Refuses peer-publish calls from other
    minions.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.fetch_secret_local service-account
    """
    peer.refuse_peer(kwargs, "k8s_pki.fetch_secret_local", __opts__["id"])
    return {"secret": _read_secret(_ca_config(config), name)}


# --------------------------------------------------------------------------------------------------------------------
# Node report
# --------------------------------------------------------------------------------------------------------------------
def _report(path, expected, renew_days, identity=None, now=None):
    """The report of one certificate file: its subject, dates and state against ``expected`` (what
    :py:func:`expectations` gives for its identity, {} for a file kubesalt does not manage)."""
    try:
        with open(path, encoding="ascii") as fh:
            pem = fh.read()
        info = x509.certificate_info(pem, now=now)
    except (OSError, UnicodeDecodeError, CommandExecutionError, SaltInvocationError) as exc:
        return {"identity": identity, "state": "unreadable", "reasons": [str(exc)]}
    expected = dict(expected)
    ca_file = expected.pop("ca_file", None)
    expected.pop("cert", None)
    if ca_file and os.path.exists(ca_file):
        with open(ca_file, encoding="ascii") as fh:
            expected["ca_pem"] = fh.read()
    reasons = x509.needs_renewal(pem, expected, renew_days, now=now)
    return {
        "identity": identity,
        "subject": info["subject"],
        "issuer": info["issuer"],
        "dns": info["dns"],
        "ips": info["ips"],
        "not_after": info["not_after"],
        "days_left": info["days_left"],
        "state": "expired" if any(r.startswith("expired") for r in reasons) else "renew" if reasons else "OK",
        "reasons": reasons,
    }


def expectations(config, minion_id):
    """
    What every certificate ``minion_id`` is entitled to must be, to be kept: ``{identity: {cert, ca_file, cn, o,
    dns, ips, usages}}`` (the policy of :py:func:`entitlements`, where the file lives, and the CA bundle it must
    chain to). :py:func:`check` judges the files on disk against it without the settings, so a caller that cannot
    render them (the renewal beacon, in the salt-minion's own process) judges by the same rule as ``k8s.pki``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.expectations "$(salt-call --out=json k8s.config | jq .local)" worker01
    """
    files = pki.layout(config)["certificates"]
    return {
        identity: {
            "cert": files[identity]["cert"],
            "ca_file": files[identity]["ca_file"],
            **{k: ent[k] for k in ("cn", "o", "dns", "ips", "usages")},
        }
        for identity, ent in pki.entitlements(config, minion_id).items()
    }


def check(expected, renew_days):
    """
    Judge the certificates ``expected`` names (the output of :py:func:`expectations`) as they are on disk:
    ``{identity: report}`` as in :py:func:`status`, ``state: missing`` for a file that is not there. Reads local
    files only.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.check "$(salt-call --out=json k8s_pki.expectations ... | jq .local)" 30
    """
    report = {}
    for identity, spec in sorted((expected or {}).items()):
        if not os.path.exists(spec["cert"]):
            report[identity] = {"identity": identity, "state": "missing", "reasons": [f"{spec['cert']} is missing"]}
            continue
        report[identity] = dict(_report(spec["cert"], spec, int(renew_days), identity), path=spec["cert"])
    return report


def _status(config, minion_id, now=None):
    pki_dir = config["paths"]["pki_dir"]
    expected = {spec["cert"]: (identity, spec) for identity, spec in expectations(config, minion_id).items()}
    managed = {spec["cert"]: identity for identity, spec in pki.layout(config)["certificates"].items()}
    report = {}
    for root, dirs, names in os.walk(pki_dir):
        dirs.sort()
        for fname in sorted(names):
            if not fname.endswith((".crt", ".pem")):
                continue
            path = os.path.join(root, fname)
            identity, spec = expected.get(path, (managed.get(path), {}))
            report[path] = _report(path, spec, config["pki"]["renew_days"], identity, now=now)
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


# --------------------------------------------------------------------------------------------------------------------
# Backup of the CA directory (what a lost CA minion cannot be rebuilt without)
# --------------------------------------------------------------------------------------------------------------------
BACKUP_CONTEXT = b"kubesalt CA directory backup"  # what a sealed CA archive is bound to


def _ca_archive(ca_dir):
    """A gzipped tar of every regular file in ``ca_dir`` -- the same bytes for the same files (sorted names, no
    times, owner root) -- and its sha256."""
    check_private_dir(ca_dir)
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name in sorted(os.listdir(ca_dir)):
            path = os.path.join(ca_dir, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            info = tarfile.TarInfo(name)
            with open(path, "rb") as fh:
                content = fh.read()
            info.size, info.mode, info.mtime, info.uid, info.gid = len(content), 0o600, 0, 0, 0
            tar.addfile(info, io.BytesIO(content))
    data = raw.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def backup_keypair(private_key_file):
    """
    Make the key pair CA backups are encrypted to: the X25519 private key goes to ``private_key_file`` (0600, base64;
    keep it offline, away from the cluster), the public key is returned -- put it in ``k8s:pki:backup:recipient``.
    Run it where the private key should live, not through the salt-master: ``salt-call --local``.

    CLI Example:

    .. code-block:: bash

        salt-call --local k8s_pki.backup_keypair /root/kubesalt-ca-backup.key
    """
    if os.path.lexists(private_key_file):
        raise CommandExecutionError(f"{private_key_file} exists; refusing to overwrite a backup key")
    private, public = seal.keypair()
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    files.write(private_key_file, base64.b64encode(raw).decode("ascii") + "\n", 0o600, dir_mode=0o700)
    return {"private_key_file": private_key_file, "recipient": public}


def ca_backup_name(config=None, recipient=None):
    """
    The archive name the CA directory's current content gets (``kubesalt-ca-<sha256 prefix>.tar.gz``, ``.sealed``
    when encrypted to ``recipient``): equal content, equal name, so a backup that exists is not written again.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.ca_backup_name
    """
    config = _ca_config(config)
    _data, digest = _ca_archive(config["paths"]["ca_dir"])
    return f"kubesalt-ca-{digest[:16]}.tar.gz" + (".sealed" if recipient else "")


def ca_backup(directory=None, recipient=None, push=None, config=None):
    """
    Back up the CA directory (``k8s:paths:ca_dir``: the CA keys and certificates, the service-account key and the
    EncryptionConfiguration -- everything a lost CA minion cannot be rebuilt without) on the CA minion, as one
    archive in ``directory`` (default ``k8s:pki:backup:dir``; 0700, the archive 0600). With ``recipient`` (default
    ``k8s:pki:backup:recipient``, an X25519 public key from :py:func:`backup_keypair`) the archive is encrypted to it
    (X25519, HKDF-SHA256, AES-256-GCM) and only the private key's holder can read it. With ``push`` (default
    ``k8s:pki:backup:push``) the encrypted archive is also copied to the salt-master with ``cp.push`` (Salt's file
    channel, not the job cache); a cleartext archive is never pushed. The bytes are never part of a return value.
    An archive of the same content already there is not written again (``created: False``).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.ca_backup
        salt-call k8s_pki.ca_backup /mnt/offsite/kubesalt recipient=Xx...= push=True
    """
    config = _ca_config(config)
    settings = config["pki"]["backup"]
    directory = directory or settings["dir"]
    recipient = recipient if recipient is not None else settings["recipient"]
    push = settings["push"] if push is None else push
    if push and not recipient:
        raise SaltInvocationError(
            "k8s:pki:backup:push needs k8s:pki:backup:recipient: a cleartext CA archive never leaves the CA minion"
        )
    if not os.path.isabs(str(directory)):
        raise SaltInvocationError(f"k8s:pki:backup:dir: '{directory}' must be an absolute path")
    data, digest = _ca_archive(config["paths"]["ca_dir"])
    name = f"kubesalt-ca-{digest[:16]}.tar.gz" + (".sealed" if recipient else "")
    path = os.path.join(str(directory), name)
    files.make_dirs(path, 0o700)
    os.chmod(directory, 0o700)
    created = not os.path.exists(path)
    if created:
        if recipient:
            sealed = seal.seal(base64.b64encode(data).decode("ascii"), recipient, BACKUP_CONTEXT)
            data = json.dumps(dict(sealed, sha256=digest), sort_keys=True).encode()
        files.write(path, data, 0o600, dir_mode=0o700)
    result = {"path": path, "sha256": digest, "created": created, "encrypted": bool(recipient), "pushed": False}
    if push:
        if not __salt__["cp.push"](path):
            raise CommandExecutionError(f"cp.push of {path} failed: the salt-master needs file_recv: True")
        result["pushed"] = True
    return result


def ca_restore(archive, private_key_file=None, config=None):
    """
    Put a CA backup (:py:func:`ca_backup`) into ``k8s:paths:ca_dir`` on a new CA minion: decrypted with the
    X25519 private key in ``private_key_file`` when it is sealed, checked against its sha256, unpacked 0600 into a
    0700 directory. A CA directory already there is moved aside (``<ca_dir>.before-restore-<time>``), never deleted.
    Run ``k8s.pki.ca`` afterwards: it finds the CAs and secrets and keeps them.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_pki.ca_restore /root/kubesalt-ca-0123456789abcdef.tar.gz.sealed /root/kubesalt-ca-backup.key
    """
    config = config or __salt__["k8s.config"]()
    ca_dir = config["paths"]["ca_dir"]
    with open(archive, "rb") as fh:
        data = fh.read()
    if str(archive).endswith(".sealed"):
        if not private_key_file:
            raise SaltInvocationError(f"{archive} is encrypted: pass private_key_file (from k8s_pki.backup_keypair)")
        with open(private_key_file, encoding="ascii") as fh:
            private = X25519PrivateKey.from_private_bytes(base64.b64decode(fh.read().strip()))
        sealed = json.loads(data)
        data, expected = base64.b64decode(seal.unseal(sealed, private, BACKUP_CONTEXT)), sealed.get("sha256")
        if hashlib.sha256(data).hexdigest() != expected:
            raise CommandExecutionError(f"{archive}: the decrypted archive does not match its sha256")
    elif not os.path.basename(str(archive)).startswith(f"kubesalt-ca-{hashlib.sha256(data).hexdigest()[:16]}"):
        raise CommandExecutionError(f"{archive}: its content does not match the sha256 in its name")
    staging = f"{ca_dir}.restoring"
    if os.path.lexists(staging):
        raise CommandExecutionError(f"{staging} exists (an interrupted restore?): look at it, move it away, run again")
    os.makedirs(staging, mode=0o700)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or "/" in member.name or member.name in ("", ".", ".."):
                raise CommandExecutionError(f"{archive}: unexpected member {member.name!r}; not a kubesalt CA backup")
            files.write(os.path.join(staging, member.name), tar.extractfile(member).read(), 0o600, dir_mode=0o700)
    aside = None
    if os.path.lexists(ca_dir):
        aside = f"{ca_dir}.before-restore-{datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
        os.rename(ca_dir, aside)
    os.rename(staging, ca_dir)
    return {"ca_dir": ca_dir, "files": sorted(os.listdir(ca_dir)), "moved_aside": aside}
