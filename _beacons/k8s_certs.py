"""
kubesalt's certificate beacon: tell the salt-master when a kubesalt certificate on this node is due for renewal.

Every ``interval`` seconds it asks ``k8s_ops.due_certificates`` -- the rule ``k8s.pki`` renews by: expired, fewer
than ``renew_days`` left, past two thirds of the lifetime, no longer the policy's subject or SANs, not from the
current CA bundle, missing -- and fires ``salt/beacon/<minion id>/k8s_certs/due`` with::

    {"certificates": {"<identity>": {"path", "state", "days_left", "reasons"}}, "id": "<minion id>"}

It fires once each time the set of due certificates (with their state and reasons) changes, not at every interval,
and once more every ``retry`` seconds while the same certificates stay due (a renewal that failed is tried again).
Nothing due: nothing fired. kubesalt's reactor (``k8s/reactor/renew.sls``) answers the event by running
``k8s_ops.renew`` on the minion the tag names; that minion checks again for itself what is due.

The ``k8s.pki`` state installs it (``k8s:pki:renewal``, state ``k8s_ops.renewal_beacon``) with ``certificates``,
the node's ``k8s_pki.expectations`` (each certificate's file, CA bundle, subject, SANs and usages), and
``renew_days``, as they were when ``k8s.pki`` ran: the beacon runs inside the salt-minion's own process, where
rendering the settings (a file-server round trip to the master) would block the minion. It reads local files only.

.. code-block:: yaml

    beacons:
      k8s_certs:
        - interval: 3600
        - retry: 21600
        - disable_during_state_run: True
        - renew_days: 30
        - certificates: {kubelet: {cert: /etc/kubernetes/pki/kubelet.crt, ca_file: ..., cn: ..., ...}}

Salt's beacon loader does not put kubesalt's shared core on ``sys.path``: this module uses ``__salt__`` only.

Beacons run in the minion's main process, which every job process is forked from. The execution module this beacon
calls imports kubesalt's shared core (``kubesalt.*``); left in the main process's ``sys.modules``, that copy would be
inherited by every later job, and a newer kubesalt synced afterwards (``saltutil.sync_utils``) would not be imported
by any job until the minion restarts: the jobs would mix new modules with the old shared core. So each check drops
``kubesalt`` from ``sys.modules`` again (:py:func:`_forget_shared_core`).
"""

import logging
import sys
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "k8s_certs"

DEFAULT_RETRY = 21600
DEFAULT_RENEW_DAYS = 30
_CONTEXT = "k8s_certs.fired"


def __virtual__():
    return __virtualname__


def _settings(config):
    settings = {}
    for item in config if isinstance(config, list) else [config]:
        if isinstance(item, dict):
            settings.update(item)
    return settings


def validate(config):
    """
    Check the beacon configuration: a list of single-key mappings; ``interval``, ``retry`` and ``renew_days`` whole
    numbers >= 1; ``certificates`` a mapping of identity -> {cert: path, ...}.

    CLI Example:

    .. code-block:: bash

        salt-call beacons.add k8s_certs "[{interval: 3600}, {retry: 21600}]" test=True
    """
    if not isinstance(config, list) or not all(isinstance(item, dict) for item in config):
        return False, "k8s_certs: the configuration must be a list of mappings, e.g. [{interval: 3600}, {retry: 21600}]"
    settings = _settings(config)
    for key in ("interval", "retry", "renew_days"):
        value = settings.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return False, f"k8s_certs: {key} {value!r} is not a whole number >= 1"
    certificates = settings.get("certificates")
    if not isinstance(certificates, dict) or not all(
        isinstance(spec, dict) and str(spec.get("cert", "")).startswith("/") for spec in certificates.values()
    ):
        return False, "k8s_certs: certificates must map each identity to {cert: <absolute path>, ...}"
    return True, "valid beacon configuration"


def _forget_shared_core():
    """Drop ``kubesalt`` and its modules from this (the minion's main) process's ``sys.modules`` (module docstring)."""
    for name in [n for n in sys.modules if n == "kubesalt" or n.startswith("kubesalt.")]:
        del sys.modules[name]


def _key(due):
    """What makes two due sets the same: the certificates, their state and their reasons (not days_left)."""
    return sorted((identity, c["state"], tuple(c["reasons"])) for identity, c in due.items())


def beacon(config):
    """
    One check (see the module documentation): ``[{"tag": "due", "certificates": {...}}]`` when the due set
    changed or ``retry`` seconds passed since it was last fired, else ``[]``.

    CLI Example:

    .. code-block:: bash

        salt-call beacons.list
    """
    settings = _settings(config)
    retry = settings.get("retry", DEFAULT_RETRY)
    try:
        due = __salt__["k8s_ops.due_certificates"](
            expected=settings.get("certificates") or {}, renew_days=settings.get("renew_days", DEFAULT_RENEW_DAYS)
        )
    except (CommandExecutionError, SaltInvocationError, KeyError) as exc:
        log.warning("k8s_certs beacon: cannot check this node's certificates: %s", exc)
        return []
    finally:
        _forget_shared_core()
    if not due:
        __context__.pop(_CONTEXT, None)
        return []
    key, now = _key(due), time.monotonic()
    fired = __context__.get(_CONTEXT)
    if fired and fired[0] == key and now - fired[1] < retry:
        return []
    __context__[_CONTEXT] = (key, now)
    log.info("k8s_certs beacon: due for renewal: %s", ", ".join(sorted(due)))
    return [{"tag": "due", "certificates": due}]
