"""The secret rotations (k8s_rotate) against a real etcd + kube-apiserver 1.20, step by step as the k8s.rotate
orchestrations take them: the CA minion's secret changed by the k8s_rotate state, master01's copy fetched by
k8s_pki.secret_present (k8s.pki), the API server restarted (k8s.control-plane). The control plane is this module's
own: its API server restarts, and the other kube tests share theirs.

- encryption at rest: a Secret written before the rotation is readable after it, and etcd holds it prefixed with the
  new key's name; the old key cannot be dropped while etcd still holds a Secret under it; every step a second time
  changes nothing.
- service-account key: a token signed with the old key is accepted during the overlap, and refused once the old key
  is dropped; tokens issued after the switch carry the new key's id.
"""

import base64
import json

import pytest
import requests

from tests.kube.conftest import control_plane
from tests.support.loader import load

pytestmark = pytest.mark.kube
PKI = load("k8s_pki")
ETCD = load("k8s_etcd")


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    with control_plane(tmp_path_factory.mktemp("rotation")) as running:
        yield running


class Master01:
    """master01 -- the CA minion and the only master -- with its real k8s_kube, k8s_etcd, k8s_rotate and k8s_pki
    modules. Its etcd endpoint is the test etcd's (k8s:nodes gives the node IPs, where nothing listens here)."""

    def __init__(self, plane):
        self.plane, self.config = plane, plane.config()
        self.layout = plane.cluster.layout("master01")

        def connection_defaults(config, identity=None):
            return dict(ETCD.connection_defaults(config, identity), endpoints=[plane.etcd_url])

        salt = {"k8s_pki.layout": PKI.layout, "k8s.config": lambda validate=False: self.config}
        kube = load("k8s_kube", salt=salt, opts={"id": "master01", "test": False})
        salt.update(
            {
                "k8s_kube.rewrite": kube.rewrite,
                "k8s_etcd.connection_defaults": connection_defaults,
                "k8s_etcd.ls": ETCD.ls,
            }
        )
        self.rotate = load("k8s_rotate", salt=salt, opts={"id": "master01", "test": False})
        salt.update({f"k8s_rotate.{f}": getattr(self.rotate, f) for f in ("secrets_storage", "reencrypt_secrets")})
        self.salt = salt

    def states(self, test=False):
        return load("k8s_rotate", "states", salt=self.salt, opts={"id": "master01", "test": test})

    def source(self, secret):
        return self.layout["secrets"][secret]["source"]

    def fetch_and_restart(self):
        """What k8s.control-plane does on a master after a rotation step: k8s.pki fetches the secrets (and the
        service-account public keys), then the API server restarts and waits for /readyz."""
        states = self.plane.cluster.states("master01")
        for secret, spec in self.layout["secrets"].items():
            assert states.secret_present(spec["path"], secret, config=self.config)["result"] is True
        public = states.public_key_present(
            self.layout["public_keys"]["service-account"], self.layout["secrets"]["service-account"]["path"]
        )
        assert public["result"] is True, public
        self.plane.restart_apiserver()

    def etcd_value(self, namespace, name):
        conn = self.salt["k8s_etcd.connection_defaults"](self.config)
        return ETCD.get(f"/registry/secrets/{namespace}/{name}", **conn)


@pytest.fixture(scope="module")
def master01(plane):
    return Master01(plane)


def secret(session, server, name, value):
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {"v": value}}
    answer = session.post(f"{server}/api/v1/namespaces/default/secrets", json=body, timeout=10)
    assert answer.status_code == 201, answer.text


def read_secret(session, server, name):
    answer = session.get(f"{server}/api/v1/namespaces/default/secrets/{name}", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["v"]


def test_encryption_key_rotation_keeps_every_secret_readable_and_moves_it_to_the_new_key(plane, master01):
    session, server = plane.session(), plane.server
    states, source = master01.states(), master01.source("encryption-config")
    value = base64.b64encode(b"written before the rotation").decode()
    secret(session, server, "before-rotation", value)
    assert master01.etcd_value("default", "before-rotation").startswith("k8s:enc:secretbox:v1:key1:")

    for step in ("added", "promoted"):
        ret = states.encryption_key(source, "key2", step, config=master01.config)
        assert ret["result"] is True and ret["changes"], ret
        # The old key, before any Secret moved, cannot be dropped: etcd says so.
        if step == "promoted":
            refused = states.encryption_key(source, "key2", "dropped", config=master01.config)
            assert refused["result"] is False and "default/before-rotation (secretbox:key1)" in refused["comment"]
        master01.fetch_and_restart()
        assert read_secret(session, server, "before-rotation") == value
    secret(session, server, "during-rotation", value)
    assert master01.etcd_value("default", "during-rotation").startswith("k8s:enc:secretbox:v1:key2:")
    assert master01.etcd_value("default", "before-rotation").startswith("k8s:enc:secretbox:v1:key1:")

    mark = plane.audit_mark()
    pending = master01.states(test=True).secrets_encrypted("Secrets under key2", "key2", config=master01.config)
    assert pending["result"] is None and "default/before-rotation" in pending["changes"]["rewritten"]
    assert plane.writes(since=mark, resource="secrets") == []
    ret = states.secrets_encrypted("Secrets under key2", "key2", config=master01.config)
    assert ret["result"] is True and "default/before-rotation" in ret["changes"]["rewritten"], ret
    assert "default/during-rotation" not in ret["changes"]["rewritten"]
    assert value not in json.dumps(ret)
    stored = master01.rotate.secrets_storage(master01.config)
    assert stored["by_key"] == {"secretbox:key2": stored["total"]}, stored["by_key"]

    ret = states.encryption_key(source, "key2", "dropped", config=master01.config)
    assert ret["result"] is True and ret["changes"]["keys"]["new"] == ["key2"], ret
    master01.fetch_and_restart()
    assert read_secret(session, server, "before-rotation") == value
    assert master01.etcd_value("default", "before-rotation").startswith("k8s:enc:secretbox:v1:key2:")

    for step in ("added", "promoted", "dropped"):
        assert states.encryption_key(source, "key2", step, config=master01.config)["changes"] == {}
    assert states.secrets_encrypted("Secrets under key2", "key2", config=master01.config)["changes"] == {}


def token(session, server):
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    answer = session.post(f"{server}/api/v1/namespaces/default/serviceaccounts/default/token", json=body, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()["status"]["token"]


def key_id(jwt):
    header = jwt.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def accepted(plane, jwt):
    """The API server's answer to the token: 200 for discovery once authenticated, 401 for a token it refuses."""
    with requests.Session() as bare:
        bare.trust_env = False
        bare.verify = str(plane.pki_dir / "kubernetes-ca.crt")
        return bare.get(f"{plane.server}/api", headers={"Authorization": f"Bearer {jwt}"}, timeout=10).status_code


def test_service_account_key_rotation_accepts_old_tokens_until_the_old_key_is_dropped(plane, master01):
    session, source, states = plane.session(), master01.source("service-account"), master01.states()
    old = token(session, plane.server)
    assert accepted(plane, old) == 200

    ret = states.service_account_key(source, "added", config=master01.config)
    assert ret["result"] is True and "PRIVATE" not in json.dumps(ret), ret
    master01.fetch_and_restart()
    assert accepted(plane, old) == 200
    assert key_id(token(session, plane.server)) == key_id(old), "signing must not switch in the 'added' step"

    assert states.service_account_key(source, "switched", config=master01.config)["result"] is True
    master01.fetch_and_restart()
    new = token(session, plane.server)
    assert key_id(new) != key_id(old)
    assert (accepted(plane, old), accepted(plane, new)) == (200, 200)
    assert states.service_account_key(source, "added", config=master01.config)["changes"] == {}

    assert states.service_account_key(source, "dropped", config=master01.config)["result"] is True
    master01.fetch_and_restart()
    assert (accepted(plane, old), accepted(plane, new)) == (401, 200)
    assert states.service_account_key(source, "dropped", config=master01.config)["changes"] == {}
