"""Cluster secrets never pass through Salt in the clear. A second master fetches the service-account key and the
EncryptionConfiguration from the CA minion over real peer publish; afterwards neither the salt-master's job cache nor
the master's event bus (everything salt-api would stream) holds any of their key material -- only ciphertext sealed
to the requester's one-time key."""

import json
import pathlib
import time

import pytest
import yaml

pytestmark = pytest.mark.integration


def key_material(ca_dir):
    """Distinctive pieces of both secrets: the signing key's base64 lines and the encryption key."""
    signing = (ca_dir / "service-account.key").read_text().splitlines()[1:-1]
    encryption = yaml.safe_load((ca_dir / "encryption-config.yaml").read_text())
    secret = encryption["resources"][0]["providers"][0]["secretbox"]["keys"][0]["secret"]
    return [line for line in signing if len(line) >= 32] + [secret]


def test_a_second_master_gets_the_secrets_and_salt_keeps_no_cleartext(
    apply_sls, pillar_override, node_root, salt_master, event_listener
):
    assert apply_sls("master01", "k8s.pki").ok  # the CA minion and its secrets
    start = time.time()
    pillar_override("k8s:\n  nodes:\n    worker02:\n      roles: [worker, master]\n")
    run = apply_sls("worker02", "k8s.pki")
    assert run.ok, run
    ca_dir = node_root("master01") / "etc/kubernetes/pki/ca"
    pki = node_root("worker02") / "etc/kubernetes/pki"
    for name in ("service-account.key", "encryption-config.yaml"):
        assert (pki / name).read_text() == (ca_dir / name).read_text(), name
    secrets = key_material(ca_dir)
    assert len(secrets) >= 2

    cachedir = pathlib.Path(salt_master.config["cachedir"])
    jobs = [p for p in (cachedir / "jobs").rglob("*") if p.is_file()]
    assert any("fetch_secret_remote" in p.read_bytes().decode("latin-1") for p in jobs), "the fetch is not cached?"
    for path in jobs:
        data = path.read_bytes()
        assert not any(s.encode() in data for s in secrets), f"key material in the job cache: {path}"

    events = event_listener.get_events([(salt_master.id, "*")], after_time=start)
    assert any("fetch_secret_remote" in json.dumps(e.data, default=str) for e in events), "no fetch event seen"
    for event in events:
        text = json.dumps(event.data, default=str)
        assert not any(s in text for s in secrets), f"key material on the event bus: {event.tag}"


def test_the_ca_step_creates_the_secrets_before_any_master_fetches_them(apply_sls, pillar_override, node_root):
    # The orchestration runs k8s.pki.ca, then k8s.pki on every node at once: a second master's fetch must not depend
    # on the CA minion's own k8s.pki having run first (it raced on a 3-master lab: "secret ... does not exist on the
    # CA minion").
    assert apply_sls("master01", "k8s.pki").ok
    ca_dir = node_root("master01") / "etc/kubernetes/pki/ca"
    names = ("service-account.key", "encryption-config.yaml")
    kept = {name: (ca_dir / name).read_bytes() for name in names}
    try:
        for name in names:
            (ca_dir / name).unlink()  # a CA minion that has not made its secrets yet
        plan = apply_sls("master01", "k8s.pki.ca", test=True)
        assert sorted(s["__id__"] for s in plan.pending.values()) == [
            "cluster secret encryption-config on the CA minion",
            "cluster secret service-account on the CA minion",
        ], plan
        assert not any((ca_dir / name).exists() for name in names), "test=True wrote a secret"
        run = apply_sls("master01", "k8s.pki.ca")
        assert run.ok, run
        made = {name: (ca_dir / name).read_text() for name in names}
        pillar_override("k8s:\n  nodes:\n    worker02:\n      roles: [worker, master]\n")
        run = apply_sls("worker02", "k8s.pki")  # before master01's k8s.pki
        assert run.ok, run
        pki = node_root("worker02") / "etc/kubernetes/pki"
        for name in names:
            assert (pki / name).read_text() == made[name], name
        assert apply_sls("master01", "k8s.pki.ca").changed == {}, "the CA step is not idempotent"
    finally:
        for name, data in kept.items():
            (ca_dir / name).write_bytes(data)
