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
