"""
Peer publish, both ends: a node calling a function on the CA minion, and the CA minion deciding who is asking.

The caller is identified by ``__pub_id``, which the salt-master sets from the authenticated minion id of the
publish; nothing the caller sends can change it. Functions meant to be called this way end in ``_remote``; their
``_local`` twins serve the CA minion itself and refuse peer-publish calls.
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError


def call(publish, me, target, fun, arg, timeout):
    """
    Call ``fun`` on minion ``target`` through peer publish (``publish`` is ``__salt__["publish.publish"]``, ``me``
    this minion's id); return the target's reply (a dict), or raise with the reason it could not be had.
    """
    # A list target of the one id: the salt-master looks up that minion's key alone, where a glob reads every
    # accepted key, three times per call (the peer rule check twice and the publication); and an id is matched
    # exactly, never as a pattern.
    reply = publish(target, fun, arg=arg, tgt_type="list", timeout=timeout)
    if isinstance(reply, str):
        raise CommandExecutionError(f"{fun} on CA minion {target!r} failed: {reply}")
    if not reply:
        raise CommandExecutionError(
            f"no reply from CA minion {target!r} to {fun} within {timeout:g} s: either the salt-master's peer "
            f"configuration does not allow minion {me!r} to call it (the master needs peer: "
            f"{{'<regex matching {me}>': ['{fun}']}}; see conf/master.d/kubesalt.conf), or {target!r} is down or "
            "has not synced kubesalt's modules"
        )
    result = reply.get(target) if isinstance(reply, dict) else None
    if isinstance(result, str):
        raise CommandExecutionError(f"CA minion {target!r} refused {fun} for minion {me!r}: {result}")
    if not isinstance(result, dict):
        raise CommandExecutionError(f"unexpected reply from CA minion {target!r} to {fun}: {reply!r:.200}")
    return result


def named(**values):
    """
    Named arguments for a peer-publish call, passed as such. A plain string argument is parsed again on the target
    (``salt.utils.args.parse_input``): one that looks like ``word=...`` becomes a keyword argument, and base64 text
    ending in ``=`` padding does whenever it holds no ``+`` or ``/`` -- a one-time key did so in about a fifth of the
    runs. A ``__kwarg__`` dict is handed over as it is.
    """
    return {"__kwarg__": True, **values}


def requester(kwargs, fun):
    """The minion id that sent this peer-publish call (``__pub_id``); refuse a call that has none."""
    pub_id = kwargs.get("__pub_id")
    if not pub_id:
        raise CommandExecutionError(
            f"{fun}: the minion sending this request could not be identified (no __pub_id); it must be called by "
            "another minion through peer publish (publish.publish), which sets it"
        )
    return str(pub_id)


def refuse_peer(kwargs, fun, me):
    """Refuse a ``*_local`` function called by another minion through peer publish."""
    pub_id = kwargs.get("__pub_id")
    if pub_id and pub_id != me:
        raise CommandExecutionError(
            f"{fun} may not be called through peer publish (called by minion {pub_id!r}); other minions use "
            f"{fun.replace('_local', '_remote')}"
        )


def refuse_arguments(kwargs, fun, why):
    """Refuse named arguments a ``*_remote`` function does not take (anything but Salt's ``__`` keys)."""
    named = sorted(k for k in kwargs if not k.startswith("__"))
    if named:
        raise SaltInvocationError(f"{fun}: unexpected argument(s) {', '.join(named)}; {why}")


def on_ca_minion(config, me, what):
    """``config`` when this minion (``me``) is the CA minion; refuse otherwise, naming where to send ``what``."""
    cluster = (config or {}).get("cluster")
    if not isinstance(cluster, dict) or "ca_minion" not in cluster:
        raise SaltInvocationError(
            "config: no derived 'cluster' facts; pass the settings produced by k8s.settings (k8s/map.jinja)"
        )
    if me != cluster["ca_minion"]:
        raise CommandExecutionError(
            f"this minion ({me!r}) is not the CA minion: k8s:pki:ca_minion resolves to {cluster['ca_minion']!r}; {what}"
        )
    return config
