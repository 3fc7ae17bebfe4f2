"""Unit-test fixtures: kubesalt settings built by the real k8s.settings() from the real YAML data files."""

import copy
import logging
import pathlib

import pytest
import salt.utils.yaml

from tests.support.loader import load

REPO = pathlib.Path(__file__).resolve().parents[2]
FORMULAS = REPO / "formulas" / "k8s"

# A small valid inventory: one master/etcd node and two workers.
INVENTORY = {
    "master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"},
    "worker01": {"roles": ["worker"], "ip": "10.240.0.21"},
    "worker02": {"roles": ["worker"], "ip": "10.240.0.22"},
}


def data(name):
    """A formula data file read as the master's import_yaml reads it (Salt's loader: a key twice is an error)."""
    return salt.utils.yaml.safe_load((FORMULAS / name).read_text())


# The default versions (defaults.yaml) and the catalogue: tests read them here rather than repeat a version that the
# next release of the catalogue changes.
VERSIONS = data("defaults.yaml")["k8s"]["versions"]
K8S_VERSION = VERSIONS["kubernetes"]
CATALOGUE = data("catalogue.yaml")["components"]


def catalogue_digest(component, version=None, arch="amd64"):
    """The catalogue's sha256 of ``component`` at ``version`` (default: its default version)."""
    version = version or VERSIONS[CATALOGUE[component].get("version_key", component)]
    return CATALOGUE[component]["versions"][version][arch]["sha256"]


@pytest.fixture(scope="session")
def k8s_module():
    return load("k8s")


@pytest.fixture(scope="session")
def make_settings(k8s_module):
    """make_settings(pillar=None, minion_id=None, validate=False) -> the merged settings dict map.jinja would see."""
    defaults, profiles, catalogue = data("defaults.yaml")["k8s"], data("profiles.yaml"), data("catalogue.yaml")

    def _make(pillar=None, minion_id=None, validate=False):
        pillar = copy.deepcopy(pillar) if pillar is not None else {"nodes": copy.deepcopy(INVENTORY)}
        return k8s_module.settings(defaults, profiles, pillar, catalogue, minion_id=minion_id, validate=validate)

    return _make


@pytest.fixture
def art(caplog):
    """The k8s_artifact execution module, with its log records captured by caplog (tests assert on the log line
    each download writes)."""
    module = load("k8s_artifact")
    caplog.set_level(logging.INFO, logger=module.log.name)
    caplog.set_level(logging.INFO, logger="kubesalt")  # downloads and the cache log from kubesalt.download/cache
    return module
