"""Fixtures for tests against a real kube-apiserver 1.20 (tests/support/apiserver.py): one control plane per
session, and each minion's real k8s_kube execution and state modules, wired like a minion's loader wires them."""

import contextlib
import datetime
import inspect
import re
import time

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support import apiserver
from tests.support.loader import load

PKI = load("k8s_pki")


@contextlib.contextmanager
def control_plane(directory):
    """A running control plane in ``directory``; the tests that need it are skipped, with the reason, without the
    binaries."""
    absent = apiserver.missing()
    if absent:
        pytest.skip(f"{apiserver.SKIP_REASON} (missing: {', '.join(absent)})")
    with apiserver.running(directory) as running:
        yield running


@pytest.fixture(scope="session")
def plane(tmp_path_factory):
    """The control plane the kube tests share."""
    with control_plane(tmp_path_factory.mktemp("kube")) as running:
        yield running


def public_functions(module, prefix):
    return {
        f"{prefix}.{name}": obj
        for name, obj in vars(module).items()
        if not name.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module.__name__
    }


class Minions:
    """Each minion's k8s_kube modules over the control plane's settings. ``publish.publish`` stands in for the
    salt-master's peer publish: it runs the real function on the target minion with ``__pub_id`` set to the caller
    when ``peer_allowed`` (a regex on the caller, like the master's peer rules) allows it, and answers ``{}`` (what
    a minion sees when the master drops the call) otherwise."""

    def __init__(self, plane):
        self.plane = plane
        self.peer_allowed = r".*"
        self.published = []

    def salt(self, minion_id):
        return {
            "k8s_pki.layout": PKI.layout,
            "k8s.config": lambda validate=False, fetch=True: self.plane.config(minion_id),
        }

    def execution(self, minion_id):
        return load("k8s_kube", salt=self.salt(minion_id), opts={"id": minion_id, "test": False})

    def states(self, minion_id, test=False):
        salt = dict(self.salt(minion_id), **public_functions(self.execution(minion_id), "k8s_kube"))
        salt["publish.publish"] = self.publisher(minion_id)
        return load("k8s_kube", "states", salt=salt, opts={"id": minion_id, "test": test})

    def publisher(self, caller):
        def publish(tgt, fun, arg=None, tgt_type="glob", returner="", timeout=5, via_master=None):
            self.published.append((caller, tgt, fun, list(arg or [])))
            if not re.match(self.peer_allowed, caller) or fun != "k8s_kube.register_node_remote":
                return {}
            func = getattr(self.execution(tgt), fun.split(".", 1)[1])
            try:
                return {tgt: func(*(arg or []), __pub_id=caller, __pub_fun=fun)}
            except (CommandExecutionError, SaltInvocationError) as exc:
                return {tgt: f"ERROR: {exc}"}

        return publish


@pytest.fixture
def minions(plane):
    return Minions(plane)


@pytest.fixture(scope="session")
def kube(plane):
    """master01's k8s_kube execution module (master01 is the CA minion and runs the API server)."""
    return Minions(plane).execution("master01")


@pytest.fixture(scope="session")
def config(plane):
    """master01's settings."""
    return plane.config("master01")


@pytest.fixture
def name(request):
    """A DNS-label name unique to the test, for the objects it creates."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower().replace("_", "-")).strip("-")
    return base[-50:].strip("-")


def register_kubelet(plane, minion_id):
    """Create Node ``minion_id`` the way its kubelet does: with the node's own kubelet certificate. Returns once the
    node lifecycle controller has handled the new Node: admission gives it a ``not-ready`` taint that the controller
    removes a moment later (the node reports no condition) with a patch of the whole taint list, which would undo a
    test's own taint change made in between (seen: 1 run in ~10). Its next change comes after the 40 s grace period."""
    with plane.session("kubelet", minion_id) as kubelet:
        answer = kubelet.post(f"{plane.server}/api/v1/nodes", json={"metadata": {"name": minion_id}})
        assert answer.status_code in (201, 409), answer.text  # 409: already registered
        deadline = time.monotonic() + 15
        while True:
            taints = kubelet.get(f"{plane.server}/api/v1/nodes/{minion_id}").json()["spec"].get("taints") or []
            if not any(t["key"] == "node.kubernetes.io/not-ready" for t in taints):
                break
            assert time.monotonic() < deadline, f"the node controller kept the not-ready taint on {minion_id}: {taints}"
            time.sleep(0.1)
    return minion_id


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_ready(plane, node):
    """Set a node's Ready condition as its kubelet would report it (there is no kubelet here)."""
    stamp = now()
    status = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
            ]
        }
    }
    with plane.session() as admin:
        answer = admin.patch(
            f"{plane.server}/api/v1/nodes/{node}/status",
            json=status,
            headers={"Content-Type": "application/merge-patch+json"},
        )
    assert answer.status_code == 200, answer.text
