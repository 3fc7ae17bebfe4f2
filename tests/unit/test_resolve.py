"""k8s.resolve (what map.jinja calls): the settings from the formula's data files and the pillar, computed once per
job and pillar; the CA minion's peer-publish path reads the data files from its file cache without asking the
fileserver. The files are the real formula files; cp.cache_file stands in for the minion's file client (the real
one is exercised by tests/integration, where every SLS renders through map.jinja and the CA minion signs from its
file cache)."""

import shutil

import pytest
from salt.exceptions import CommandExecutionError

from tests.support.loader import load
from tests.unit.conftest import FORMULAS, INVENTORY


@pytest.fixture
def minion(tmp_path):
    """The k8s module of minion worker01, its file client counting what it is asked, its file cache empty."""
    calls = []

    def cache_file(url, saltenv="base"):
        calls.append(("cache_file", url, saltenv))
        return str(FORMULAS / url.rsplit("/", 1)[1])

    module = load(
        "k8s",
        opts={"id": "worker01", "cachedir": str(tmp_path)},
        pillar={"k8s": {"nodes": dict(INVENTORY)}},
        salt={"cp.cache_file": cache_file},
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


def test_without_fetch_the_data_files_come_from_the_file_cache(minion, tmp_path):
    """Where Salt's file client caches salt://k8s/<name>.yaml: <cachedir>/files/<saltenv>/k8s/<name>.yaml. The copy
    there is what is read (an edited one shows), and the file client is asked only for what is not there."""
    cached = tmp_path / "files" / "base" / "k8s"
    cached.mkdir(parents=True)
    for name in ("defaults", "profiles"):
        shutil.copy(FORMULAS / f"{name}.yaml", cached / f"{name}.yaml")
    text = (cached / "defaults.yaml").read_text()
    assert "worker_batch: 4" in text
    (cached / "defaults.yaml").write_text(text.replace("worker_batch: 4", "worker_batch: 7"))
    assert minion.resolve(fetch=False)["worker_batch"] == 7
    assert minion.calls == [("cache_file", "salt://k8s/catalogue.yaml", "base")]


def test_an_invalid_pillar_fails_naming_the_key_and_is_not_kept(minion):
    minion.__pillar__["k8s"] = {"nodes": dict(INVENTORY), "fs_root": "relative/path"}
    with pytest.raises(CommandExecutionError, match="k8s:fs_root"):
        minion.resolve()
    assert minion.resolve(validate=False)["fs_root"] == "relative/path"


def test_a_data_file_missing_from_the_fileserver_is_named(minion):
    minion.__salt__["cp.cache_file"] = lambda url, saltenv="base": ""
    with pytest.raises(CommandExecutionError, match=r"salt://k8s/defaults.yaml \(saltenv base\) is not on"):
        minion.resolve()
