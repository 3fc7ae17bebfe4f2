"""k8s.resolve (what map.jinja calls): the settings from the formula's data files and the pillar, computed once per
job and pillar; the CA minion's peer-publish path reads the data files from its file cache without asking the
fileserver. The files are the real formula files; cp.cache_file / cp.is_cached stand in for the minion's file
client (the real one is exercised by tests/integration, where every SLS renders through map.jinja)."""

import pytest
from salt.exceptions import CommandExecutionError

from tests.support.loader import load
from tests.unit.conftest import FORMULAS, INVENTORY


@pytest.fixture
def minion():
    """The k8s module of minion worker01, its file client counting what it is asked."""
    calls = []

    def cache_file(url, saltenv="base"):
        calls.append(("cache_file", url, saltenv))
        return str(FORMULAS / url.rsplit("/", 1)[1])

    def is_cached(url, saltenv="base"):
        calls.append(("is_cached", url, saltenv))
        return str(FORMULAS / url.rsplit("/", 1)[1])

    module = load(
        "k8s",
        opts={"id": "worker01"},
        pillar={"k8s": {"nodes": dict(INVENTORY)}},
        salt={"cp.cache_file": cache_file, "cp.is_cached": is_cached},
    )
    module.calls = calls
    return module


def test_settings_are_computed_once_per_job_and_each_caller_gets_a_copy(minion):
    first = minion.resolve()
    assert first["cluster"]["ca_minion"] == "master01" and first["cluster"]["is_worker"]
    assert [c[0] for c in minion.calls] == ["cache_file"] * 3  # defaults, profiles, catalogue
    first["nodes"].clear()  # an SLS changing what it got changes nobody else's copy
    second = minion.resolve()
    assert second["nodes"] and len(minion.calls) == 3
    assert minion.config(validate=True) == second and len(minion.calls) == 3


def test_a_different_pillar_in_the_same_job_is_resolved_again(minion):
    minion.resolve()
    minion.__pillar__["k8s"] = {"nodes": dict(INVENTORY, worker03={"roles": ["worker"], "ip": "10.240.0.23"})}
    assert "worker03" in minion.resolve()["nodes"] and len(minion.calls) == 6


def test_without_fetch_the_data_files_come_from_the_file_cache(minion):
    minion.resolve(fetch=False)
    assert [c[0] for c in minion.calls] == ["is_cached"] * 3


def test_an_invalid_pillar_fails_naming_the_key_and_is_not_kept(minion):
    minion.__pillar__["k8s"] = {"nodes": dict(INVENTORY), "fs_root": "relative/path"}
    with pytest.raises(CommandExecutionError, match="k8s:fs_root"):
        minion.resolve()
    assert minion.resolve(validate=False)["fs_root"] == "relative/path"


def test_a_data_file_missing_from_the_fileserver_is_named(minion):
    minion.__salt__["cp.cache_file"] = lambda url, saltenv="base": ""
    with pytest.raises(CommandExecutionError, match=r"salt://k8s/defaults.yaml \(saltenv base\) is not on"):
        minion.resolve()
