"""Test harness for the k8s_pki modules: a small cluster of minions that share one machine.

Each minion gets its own ``fs_root`` (``<tmp>/<minion id>``), its own settings from the real ``k8s.settings`` over
``formulas/k8s/*.yaml``, and its own loaded copies of the real execution and state modules. ``publish.publish`` is a
stand-in for the salt-master's peer publish: it calls the real ``k8s_pki`` function on the target minion with
``__pub_id`` set to the caller, and turns exceptions into ``"ERROR: ..."`` strings the way a minion does. The real
salt-master path is covered by tests/integration.
"""

import datetime
import inspect
import pathlib
import re

import pytest
import salt.minion
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support.loader import ROOT, load

FORMULA = ROOT / "formulas" / "k8s"

NODES = {
    "master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11", "names": ["master01.lab.example"]},
    "master02": {"roles": ["master", "etcd"], "ip": "10.240.0.12", "names": ["master02.lab.example"]},
    "master03": {"roles": ["master", "etcd"], "ip": "10.240.0.13", "names": ["master03.lab.example"]},
    "worker01": {"roles": ["worker"], "ip": "10.240.0.21", "names": ["worker01.lab.example"]},
    "worker02": {"roles": ["worker"], "ip": "10.240.0.22"},
}

_YAML = {}


def formula_yaml(name):
    if name not in _YAML:
        _YAML[name] = yaml.safe_load((FORMULA / name).read_text())
    return _YAML[name]


def public_functions(module):
    """The functions Salt's loader would expose: public, defined in the module itself."""
    return {
        f"k8s_pki.{name}": obj
        for name, obj in vars(module).items()
        if not name.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module.__name__
    }


class Cluster:
    """Minions on one machine, each with its own fs_root, config, execution module and state module."""

    def __init__(self, root, nodes=None, key_type="ecdsa-p256", network_mode="routes", pki=None):
        self.root = pathlib.Path(root)
        self.pillar = {
            "nodes": nodes or NODES,
            "network": {"mode": network_mode},
            "pki": dict({"key_type": key_type}, **(pki or {})),
        }
        self.peer_allowed = r".*"  # regex on the caller id, like the master's peer config
        self.ca_down = False
        self.published = []
        self._k8s = load("k8s")
        self._modules = {}

    # settings -------------------------------------------------------------------------------------------------------
    def config(self, minion_id):
        pillar = dict(self.pillar, fs_root=str(self.root / minion_id))
        validate = self.pillar["network"]["mode"] != "flannel"  # flannel's CNI plugin has no pinned digest
        return self._k8s.settings(
            formula_yaml("defaults.yaml")["k8s"],
            formula_yaml("profiles.yaml"),
            pillar,
            formula_yaml("catalogue.yaml"),
            minion_id=minion_id,
            validate=validate,
        )

    @property
    def ca_minion(self):
        return self.config("master01")["cluster"]["ca_minion"]

    def layout(self, minion_id):
        return self.execution(minion_id).layout(self.config(minion_id))

    # modules --------------------------------------------------------------------------------------------------------
    def execution(self, minion_id):
        """This minion's k8s_pki execution module (loaded once per minion, like a minion's loader does)."""
        key = ("modules", minion_id)
        if key not in self._modules:
            self._modules[key] = load(
                "k8s_pki",
                opts={"id": minion_id, "test": False},
                salt={"k8s.config": lambda validate=False, fetch=True: self.config(minion_id)},
            )
        return self._modules[key]

    def states(self, minion_id, test=False):
        """This minion's k8s_pki state module, its __salt__ wired to the minion's real execution module."""
        key = ("states", minion_id)
        if key not in self._modules:
            salt = public_functions(self.execution(minion_id))
            salt["k8s.config"] = lambda validate=False, fetch=True: self.config(minion_id)
            salt["publish.publish"] = self.publisher(minion_id)
            self._modules[key] = load("k8s_pki", "states", opts={"id": minion_id, "test": False}, salt=salt)
        module = self._modules[key]
        module.__opts__ = {"id": minion_id, "test": test}
        return module

    def publisher(self, caller):
        def publish(tgt, fun, arg=None, tgt_type="glob", returner="", timeout=5, via_master=None):
            self.published.append((caller, tgt, fun))
            if self.ca_down or not re.match(self.peer_allowed, caller) or fun.startswith("publish."):
                return {}
            module = self.execution(tgt)
            func = getattr(module, fun.split(".", 1)[1], None)
            if func is None:
                return {tgt: f"'{fun}' is not available."}
            try:
                # Unpacked as the target minion unpacks a publish (a plain "name=value" string is a named argument).
                args, kwargs = salt.minion.load_args_and_kwargs(func, list(arg or []))
                return {tgt: func(*args, **kwargs, __pub_id=caller, __pub_fun=fun)}
            except (CommandExecutionError, SaltInvocationError) as exc:
                return {tgt: f"ERROR: {exc}"}

        return publish

    # whole-cluster helpers ------------------------------------------------------------------------------------------
    def create_cas(self):
        ca = self.ca_minion
        states = self.states(ca)
        key_type = self.pillar["pki"]["key_type"]
        for spec in self.layout(ca)["cas"].values():
            ret = states.ca_present(spec["cert"], spec["key"], spec["common_name"], key_type=key_type)
            assert ret["result"] is True, ret
        for secret, spec in self.layout(ca)["secrets"].items():
            ret = states.secret_present(spec["source"], secret, config=self.config(ca))
            assert ret["result"] is True, ret
        return self

    def issue(self, minion_id, identity, test=False):
        spec = self.layout(minion_id)["certificates"][identity]
        return self.states(minion_id, test=test).certificate_managed(
            spec["cert"], spec["key"], identity, config=self.config(minion_id), ca_file=spec["ca_file"]
        )

    def issue_all(self, only=None):
        """Every certificate every node is entitled to (or those in ``only``), through certificate_managed;
        returns {(minion, identity): state return}."""
        results = {}
        for minion in self.pillar["nodes"]:
            exe = self.execution(minion)
            for identity in exe.entitlements(self.config(minion), minion):
                if only and identity not in only:
                    continue
                results[(minion, identity)] = ret = self.issue(minion, identity)
                assert ret["result"] is True, ret
        return results

    def files(self, minion_id, identity):
        spec = self.layout(minion_id)["certificates"][identity]
        return {k: pathlib.Path(v) for k, v in spec.items()}

    def read(self, minion_id, identity):
        return {k: p.read_text() for k, p in self.files(minion_id, identity).items()}


def reissue(cert_path, ca_dir, days, ca="kubernetes-ca"):
    """Re-sign the certificate at ``cert_path`` (same key, subject and extensions) with CA ``ca`` of ``ca_dir``
    (``<ca>.crt``/``<ca>.key``), issued 300 days ago and valid for ``days`` more days: a real certificate of this
    cluster, only near its end."""
    cert_path = pathlib.Path(cert_path)
    old = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca_cert = x509.load_pem_x509_certificate((pathlib.Path(ca_dir) / f"{ca}.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pathlib.Path(ca_dir) / f"{ca}.key").read_bytes(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca_cert.subject)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=300))
        .not_valid_after(now + datetime.timedelta(days=days, hours=12))
    )
    for ext in old.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    cert_path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def tree(root):
    """Every path under ``root`` with its mode and content, to show that nothing changed."""
    root = pathlib.Path(root)
    return {
        str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def cluster(tmp_path):
    """A five-node cluster (3 masters that are etcd members, 2 workers) with its CAs and secrets created."""
    return Cluster(tmp_path).create_cas()


@pytest.fixture(scope="session")
def issued_cluster(tmp_path_factory):
    """The five-node cluster with every certificate issued (ECDSA). Shared: tests must not change it."""
    cluster = Cluster(tmp_path_factory.mktemp("pki-ecdsa")).create_cas()
    cluster.issue_all()
    return cluster


RSA_NODES = {
    "master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"},
    "worker01": {"roles": ["worker"], "ip": "10.240.0.21"},
}
RSA_IDENTITIES = ("apiserver", "admin", "apiserver-etcd-client", "etcd-server", "etcd-peer", "kubelet")


@pytest.fixture(scope="session")
def rsa_issued_cluster(tmp_path_factory):
    """A two-node rsa-2048 cluster with the TLS-relevant certificates issued. Shared: tests must not change it.
    (RSA keys cost ~45 ms to generate and again to load, so this one is kept small.)"""
    cluster = Cluster(tmp_path_factory.mktemp("pki-rsa"), nodes=RSA_NODES, key_type="rsa-2048").create_cas()
    cluster.issue_all(only=RSA_IDENTITIES)
    return cluster
