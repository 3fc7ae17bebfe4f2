"""formulas/k8s/rotate/*.sls (the rotation orchestrations) rendered by Salt's own Jinja + YAML renderers: the steps in
their order, each requiring the one before, the API servers restarted one master at a time after each change of a
secret, and a bad orchestration pillar refused before any step runs."""

import pathlib

import pytest
import salt.exceptions
import salt.utils.templates
import salt.utils.yaml

from tests.support.fileserver import master_functions
from tests.unit.test_cluster_render import master_opts

ROTATE = pathlib.Path(__file__).resolve().parents[2] / "formulas" / "k8s" / "rotate"


@pytest.fixture
def opts(tmp_path):
    return master_opts(tmp_path, {})


def render(opts, sls, pillar):
    text = salt.utils.templates.render_jinja_tmpl(
        (ROTATE / f"{sls}.sls").read_text(),
        {
            "opts": opts,
            "salt": {"pillar.get": lambda key, default=None: pillar.get(key, default), **master_functions(opts)},
            "pillar": pillar,
            "grains": {},
            "saltenv": "base",
            "sls": f"k8s.rotate.{sls}",
        },
    )
    return salt.utils.yaml.safe_load(text)


def steps(states):
    """``[(id, function, args)]`` in the order the requisites impose (each step requires the one before)."""
    flat = {}
    for sid, body in states.items():
        ((function, items),) = body.items()
        flat[sid] = (function, {k: v for item in items for k, v in item.items()})
    order, current = [], next(s for s, (_, a) in flat.items() if "require" not in a)
    while current:
        order.append((current, *flat[current]))
        after = [s for s, (_, a) in flat.items() if {"salt": current} in a.get("require", [])]
        assert len(after) <= 1, f"{current} is required by {after}: the steps must form one chain"
        current = after[0] if after else None
    assert len(order) == len(flat), f"steps outside the chain: {set(flat) - {s for s, *_ in order}}"
    return order


SYNC_STEPS = 2  # orchestrate.jinja's sync(): the extensions' sync, then the validation


def test_encryption_rotation_adds_promotes_reencrypts_then_drops_restarting_masters_one_at_a_time(opts):
    order = steps(render(opts, "encryption", {"rotate_to": "key2"}))
    assert [sid for sid, *_ in order] == [
        "sync kubesalt extensions",
        "validate configuration on every node",
        "encryption key key2 added",
        "API servers restarted one at a time (key2 added)",
        "encryption key key2 promoted",
        "API servers restarted one at a time (key2 promoted)",
        "Secrets stored under key2",
        "encryption key key2 dropped",
        "API servers restarted one at a time (key2 dropped)",
    ]
    for sid, function, args in order[SYNC_STEPS:]:
        assert function == "salt.state" and args["failhard"] is True and args["tgt"] == "G@role:master"
        if sid.startswith("API servers"):
            assert args["sls"] == "k8s.control-plane" and args["batch"] == 1
        elif sid.startswith("encryption key"):
            assert args["sls"] == "k8s.rotate.encryption-key"
            assert args["pillar"] == {"k8s_rotate": {"key": "key2", "step": sid.rsplit(" ", 1)[1]}}
        else:
            assert args["sls"] == "k8s.rotate.secrets" and args["pillar"] == {"k8s_rotate": {"key": "key2"}}


@pytest.mark.parametrize("bad", [None, "", "key:2", "a b", "k" * 64, "key2\n"])
def test_encryption_rotation_refuses_a_bad_key_name_naming_rotate_to(opts, bad):
    pillar = {} if bad is None else {"rotate_to": bad}
    with pytest.raises(salt.exceptions.SaltRenderError, match="rotate_to"):
        render(opts, "encryption", pillar)


def test_service_account_rotation_adds_then_switches_and_drops_in_a_later_run(opts):
    first = steps(render(opts, "service-account", {}))
    assert [sid for sid, *_ in first] == [
        "sync kubesalt extensions",
        "validate configuration on every node",
        "service-account key added",
        "API servers and controller-managers restarted one at a time (service-account key added)",
        "service-account key switched",
        "API servers and controller-managers restarted one at a time (service-account key switched)",
    ]
    later = steps(render(opts, "service-account", {"drop_old": True}))
    assert [sid for sid, *_ in later][SYNC_STEPS:] == [
        "service-account key dropped",
        "API servers and controller-managers restarted one at a time (service-account key dropped)",
    ]
    for sid, _, args in first[SYNC_STEPS:] + later[SYNC_STEPS:]:
        if sid.startswith("API servers"):
            assert args["sls"] == "k8s.control-plane" and args["batch"] == 1
        else:
            assert args["pillar"] == {"k8s_rotate": {"step": sid.rsplit(" ", 1)[1]}}


def test_service_account_rotation_refuses_a_drop_old_that_is_not_a_boolean(opts):
    with pytest.raises(salt.exceptions.SaltRenderError, match="drop_old"):
        render(opts, "service-account", {"drop_old": "yes"})
