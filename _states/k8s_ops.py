"""
kubesalt operations states: the certificate-renewal beacon of a node.

:py:func:`renewal_beacon` puts kubesalt's ``k8s_certs`` beacon (``_beacons/k8s_certs.py``) into the running
salt-minion and into its saved beacon configuration (``<minion config dir>/minion.d/beacons.conf``, written by
``beacons.save``, so the beacon survives a restart of the minion), or takes it out. Compare, then act: a second run
changes nothing, and ``test=True`` reports the change without making it.
"""

import os

import salt.utils.files
import salt.utils.yaml

__virtualname__ = "k8s_ops"


def __virtual__():
    if "beacons.list" not in __salt__:
        return (False, "k8s_ops: the beacons execution module is not available")
    return __virtualname__


def _saved_path():
    """Where ``beacons.save`` writes (the same expression as Salt's beacons module)."""
    return os.path.join(
        os.path.dirname(__opts__["conf_file"]), os.path.dirname(__opts__["default_include"]), "beacons.conf"
    )


def _saved(name, path):
    try:
        with salt.utils.files.fopen(path) as fh:
            data = salt.utils.yaml.safe_load(fh) or {}
    except FileNotFoundError:
        return None
    return ((data.get("beacons") if isinstance(data, dict) else None) or {}).get(name)


def renewal_beacon(name, enabled=True, interval=3600, retry=21600, renew_days=30, certificates=None):
    """
    Ensure the beacon ``name`` (kubesalt's ``k8s_certs``) runs on this minion every ``interval`` seconds, fires
    again after ``retry`` seconds for certificates that stay due, skips its check while a state run is in progress,
    and is saved in the minion's ``beacons.conf``; with ``enabled: False``, ensure it is neither running nor saved.
    ``certificates`` (``k8s_pki.expectations`` of this node) and ``renew_days`` are what it judges the files on disk
    against. The beacon module must be on the minion (``saltutil.sync_beacons``, which the orchestration and
    highstate do, or ``pip install`` of kubesalt).

    .. code-block:: jinja

        certificate renewal beacon:
          k8s_ops.renewal_beacon:
            - name: k8s_certs
            - interval: 3600
            - retry: 21600
            - renew_days: 30
            - certificates: {{ salt["k8s_pki.expectations"](k8s, opts.id) | json }}
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    desired = [
        {"interval": int(interval)},
        {"retry": int(retry)},
        {"disable_during_state_run": True},
        {"renew_days": int(renew_days)},
        {"certificates": certificates or {}},
    ]
    desired = desired if enabled else None
    running = __salt__["beacons.list"](return_yaml=False, include_pillar=False)
    if not isinstance(running, dict):
        ret["comment"] = f"could not read this minion's beacons (beacons.list answered {running!r})"
        return ret
    current, path = running.get(name), _saved_path()
    saved = _saved(name, path)
    if current == desired and saved == desired:
        ret.update(result=True, comment=f"beacon {name} is {'in place' if enabled else 'absent'}, and saved so")
        return ret
    if current != desired:
        ret["changes"] = {"old": current, "new": desired}
    if saved != desired:
        ret["changes"]["saved"] = path
    what = f"beacon {name} {'configured' if enabled else 'removed'} and saved to {path}"
    if __opts__["test"]:
        ret.update(result=None, comment=f"would be {what}")
        return ret
    if current != desired:
        if desired is None:
            answer = __salt__["beacons.delete"](name)
        elif enabled and name not in (__salt__["beacons.list_available"](return_yaml=False) or []):
            ret.update(
                changes={},
                comment=f"beacon {name} is not on this minion; sync it first: salt-call saltutil.sync_beacons "
                "(k8s.cluster and highstate do)",
            )
            return ret
        elif current is None:
            answer = __salt__["beacons.add"](name, desired)
        else:
            answer = __salt__["beacons.modify"](name, desired)
        if not answer.get("result"):
            ret.update(changes={}, comment=f"beacon {name}: {answer.get('comment')}")
            return ret
    answer = __salt__["beacons.save"]()
    if not answer.get("result"):
        ret["comment"] = f"beacon {name}: {answer.get('comment')}"
        return ret
    ret.update(result=True, comment=what)
    return ret
