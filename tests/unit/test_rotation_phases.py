"""The phases of the secret rotations (kubesalt.rotation) on the files k8s_pki really generates, and the
k8s_rotate states on a CA directory: each step reached once, a step out of order refused with nothing changed, a
step stopped half-way taken again from what is on disk, test=True honest, nothing secret in a state's return."""

import base64
import os

import pytest
import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import pki, rotation, x509
from tests.support.loader import load


def config_with(*names):
    text = pki.generate_secret("encryption-config")
    data = yaml.safe_load(text)
    keys = data["resources"][0]["providers"][0]["secretbox"]["keys"]
    keys[:] = [{"name": n, "secret": keys[0]["secret"]} for n in names]
    return yaml.safe_dump(data, sort_keys=False)


def secretbox_keys(text):
    return yaml.safe_load(text)["resources"][0]["providers"][0]["secretbox"]["keys"]


# --------------------------------------------------------------------------------------------------------------------
# Encryption at rest
# --------------------------------------------------------------------------------------------------------------------
def test_an_encryption_rotation_goes_added_promoted_dropped_each_once():
    start = pki.generate_secret("encryption-config")
    assert rotation.encryption_keys(start) == ["key1"]
    added, phase = rotation.encryption_step(start, "key2", "added")
    assert phase == "start" and rotation.encryption_keys(added) == ["key1", "key2"]
    old, new = secretbox_keys(added)
    assert old == secretbox_keys(start)[0] and len(base64.b64decode(new["secret"])) == 32
    assert rotation.encryption_step(added, "key2", "added") == (added, "added")
    promoted, phase = rotation.encryption_step(added, "key2", "promoted")
    assert phase == "added" and secretbox_keys(promoted) == [new, old]
    assert rotation.encryption_step(promoted, "key2", "added") == (promoted, "promoted")
    dropped, phase = rotation.encryption_step(promoted, "key2", "dropped")
    assert phase == "promoted" and secretbox_keys(dropped) == [new]
    for step in ("added", "promoted", "dropped"):
        assert rotation.encryption_step(dropped, "key2", step) == (dropped, "done")
    # The identity fallback for data written before encryption was enabled stays.
    assert yaml.safe_load(dropped)["resources"][0]["providers"][1] == {"identity": {}}


@pytest.mark.parametrize(
    ("names", "step", "why"),
    [
        (["key1"], "promoted", "at phase 'start'"),
        (["key1"], "dropped", "at phase 'start'"),
        (["key1", "key2"], "dropped", "at phase 'added'"),
        (["key1", "key3"], "added", "another rotation is under way"),
        (["key3", "key1"], "promoted", "another rotation is under way"),
    ],
)
def test_an_encryption_step_out_of_order_is_refused(names, step, why):
    with pytest.raises(CommandExecutionError, match=why):
        rotation.encryption_step(config_with(*names), "key2", step)


@pytest.mark.parametrize("bad", ["", "key:2", "-key", "k" * 64, None, 2])
def test_a_bad_key_name_is_refused_naming_rotate_to(bad):
    with pytest.raises(SaltInvocationError, match="rotate_to"):
        rotation.encryption_step(pki.generate_secret("encryption-config"), bad, "added")


def test_what_stored_an_etcd_value():
    assert rotation.stored_under("k8s:enc:secretbox:v1:key2:\x8f\x00binary") == "secretbox:key2"
    assert rotation.stored_under("k8s:enc:aescbc:v1:old:xyz") == "aescbc:old"
    assert rotation.stored_under("k8s\x00\n\x0c\n\x02v1\x12\x06Secret") == "identity"


# --------------------------------------------------------------------------------------------------------------------
# Service-account key
# --------------------------------------------------------------------------------------------------------------------
def public_keys(text):
    return [b for b in rotation.verification_keys(text).split("-----END PUBLIC KEY-----\n") if b]


def test_a_service_account_rotation_accepts_both_keys_until_the_old_is_dropped():
    old = x509.generate_private_key()
    added, waiting, phase = rotation.service_account_step(old, None, "added", "ecdsa-p256")
    assert phase == "idle" and waiting and rotation.service_account_phase(added, waiting) == "added"
    # Still signed with the old key; both accepted.
    assert rotation.split_service_account(added)[0].strip() == old.strip()
    assert rotation.verification_keys(added) == x509.public_key(old) + x509.public_key(waiting)
    assert rotation.service_account_step(added, waiting, "added", "ecdsa-p256") == (added, waiting, "added")
    switched, left, phase = rotation.service_account_step(added, waiting, "switched", "ecdsa-p256")
    assert phase == "added" and left is None
    assert rotation.split_service_account(switched)[0].strip() == waiting.strip()
    assert rotation.verification_keys(switched) == x509.public_key(waiting) + x509.public_key(old)
    # A first run again after the switch: nothing to do until the old key is dropped.
    assert rotation.service_account_step(switched, None, "added", "ecdsa-p256") == (switched, None, "switched")
    dropped, _, phase = rotation.service_account_step(switched, None, "dropped", "ecdsa-p256")
    assert phase == "switched" and rotation.verification_keys(dropped) == x509.public_key(waiting)
    assert rotation.service_account_step(dropped, None, "dropped", "ecdsa-p256") == (dropped, None, "idle")


def test_a_service_account_step_stopped_half_way_is_taken_again_from_disk():
    old, new = x509.generate_private_key(), x509.generate_private_key()
    # 'added' wrote the waiting key, not yet the secret: the same key is published, no other made.
    secret, waiting, phase = rotation.service_account_step(old, new, "added", "ecdsa-p256")
    assert phase == "idle" and waiting == new and x509.public_key(new) in secret
    # 'switched' wrote the secret, not yet removed the waiting key: it is done, and the file goes.
    switched = rotation.service_account_secret(new, [x509.public_key(old)])
    assert rotation.service_account_step(switched, new, "switched", "ecdsa-p256") == (switched, None, "switched")


@pytest.mark.parametrize(("step", "why"), [("switched", "run the 'added' step first"), ("bogus", "not one of")])
def test_a_service_account_step_out_of_order_is_refused(step, why):
    with pytest.raises((CommandExecutionError, SaltInvocationError), match=why):
        rotation.service_account_step(x509.generate_private_key(), None, step, "ecdsa-p256")


def test_dropping_before_the_switch_is_refused():
    old = x509.generate_private_key()
    added, waiting, _ = rotation.service_account_step(old, None, "added", "ecdsa-p256")
    with pytest.raises(CommandExecutionError, match="has not switched"):
        rotation.service_account_step(added, waiting, "dropped", "ecdsa-p256")


# --------------------------------------------------------------------------------------------------------------------
# The states on a CA directory
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture
def ca(tmp_path):
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir(mode=0o700)
    config = {
        "paths": {"pki_dir": str(tmp_path / "pki"), "ca_dir": str(ca_dir)},
        "cluster": {"ca_minion": "master01", "is_ca": True, "is_master": True},
        "pki": {"key_type": "ecdsa-p256"},
    }
    layout = pki.layout(config)["secrets"]
    for secret, spec in layout.items():
        with open(spec["source"], "w") as out:
            out.write(pki.generate_secret(secret))
        os.chmod(spec["source"], 0o600)
    return config, layout


def read(path):
    with open(path) as text:
        return text.read()


def states(test=False, minion="master01", stored=None):
    salt = {"k8s_rotate.secrets_storage": lambda config: stored or {"total": 0, "secrets": {}}}
    return load("k8s_rotate", "states", salt=salt, opts={"id": minion, "test": test})


def test_the_encryption_key_state_reports_names_only_and_is_idempotent(ca):
    config, layout = ca
    source = layout["encryption-config"]["source"]
    before = read(source)
    ret = states(test=True).encryption_key(source, "key2", "added", config=config)
    assert ret["result"] is None and ret["changes"]["keys"] == {"old": ["key1"], "new": ["key1", "key2"]}
    assert read(source) == before
    ret = states().encryption_key(source, "key2", "added", config=config)
    assert ret["result"] is True and ret["changes"]["keys"]["new"] == ["key1", "key2"]
    secret = secretbox_keys(read(source))[1]["secret"]
    assert secret not in repr(ret) and oct(os.stat(source).st_mode & 0o777) == "0o600"
    assert states().encryption_key(source, "key2", "added", config=config)["changes"] == {}
    ret = states().encryption_key(source, "key2", "dropped", config=config)
    assert ret["result"] is False and "at phase 'added'" in ret["comment"]


def test_the_old_encryption_key_is_not_dropped_while_etcd_holds_secrets_under_it(ca):
    config, layout = ca
    source = layout["encryption-config"]["source"]
    for step in ("added", "promoted"):
        assert states().encryption_key(source, "key2", step, config=config)["result"] is True
    promoted = read(source)
    stored = {"total": 2, "secrets": {"default/a": "secretbox:key2", "default/b": "secretbox:key1"}}
    ret = states(stored=stored).encryption_key(source, "key2", "dropped", config=config)
    assert ret["result"] is False and "default/b (secretbox:key1)" in ret["comment"]
    assert read(source) == promoted
    stored["secrets"]["default/b"] = "secretbox:key2"
    ret = states(stored=stored).encryption_key(source, "key2", "dropped", config=config)
    assert ret["result"] is True and ret["changes"]["keys"]["new"] == ["key2"]


def test_the_rotation_states_run_on_the_ca_minion_only(ca):
    config, layout = ca
    ret = states(minion="master02").encryption_key(
        layout["encryption-config"]["source"], "key2", "added", config=config
    )
    assert ret["result"] is False and "CA minion 'master01'" in ret["comment"]
    ret = states().service_account_key("/etc/passwd", "added", config=config)
    assert ret["result"] is False and "is not the service-account secret" in ret["comment"]


def test_the_service_account_state_keeps_the_new_key_beside_the_secret_until_it_signs(ca):
    config, layout = ca
    source = layout["service-account"]["source"]
    old = read(source)
    ret = states(test=True).service_account_key(source, "added", config=config)
    assert ret["result"] is None and set(ret["changes"]) == {"secret", "next"}
    assert read(source) == old and not os.path.exists(source + ".next")
    ret = states().service_account_key(source, "added", config=config)
    assert ret["result"] is True and "PRIVATE" not in repr(ret)
    new = read(source + ".next")
    assert oct(os.stat(source + ".next").st_mode & 0o777) == "0o600"
    assert states().service_account_key(source, "added", config=config)["changes"] == {}
    ret = states().service_account_key(source, "switched", config=config)
    assert ret["changes"]["next"].endswith("removed") and not os.path.exists(source + ".next")
    assert rotation.verification_keys(read(source)) == x509.public_key(new) + x509.public_key(old)
    assert states().service_account_key(source, "switched", config=config)["changes"] == {}
    assert states().service_account_key(source, "dropped", config=config)["result"] is True
    assert rotation.verification_keys(read(source)) == x509.public_key(new)
