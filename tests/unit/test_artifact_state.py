"""The k8s_artifact states (managed, extracted): compare -> act -> report, idempotent, honest in test mode.
The state module is loaded with the real execution module as ``__salt__`` and talks to a real HTTP server on
127.0.0.1."""

import hashlib
import io
import os
import tarfile

import pytest

from tests.support.httpserver import http_server  # noqa: F401 - pytest fixture
from tests.support.loader import load
from tests.unit.conftest import K8S_VERSION

BODY = os.urandom(400_000)
DIGEST = hashlib.sha256(BODY).hexdigest()
OLD = b"old kube-apiserver"
NODES = {"master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"}}


@pytest.fixture
def state(art):
    """state(test=False) -> the state module with the execution module as __salt__."""
    funcs = {"k8s_artifact.install": art.install, "k8s_artifact.extract": art.extract}

    def _state(test=False):
        return load("k8s_artifact", kind="states", salt=funcs, opts={"test": test, "id": "unit"})

    return _state


def managed(state, tmp_path, url, test=False, **kwargs):
    args = {"digest": DIGEST, "cache_dir": str(tmp_path / "cache"), "user": None, "group": None, **kwargs}
    return state(test).managed(str(tmp_path / "bin" / "kube-apiserver"), url, **args)


def test_managed_installs_then_second_apply_changes_nothing_without_request(state, http_server, tmp_path):
    url = http_server.serve("/kube-apiserver", BODY)
    first = managed(state, tmp_path, url)
    assert first["result"] is True
    assert first["changes"] == {"digest": {"old": None, "new": f"sha256:{DIGEST}"}}
    second = managed(state, tmp_path, url)
    assert second == {
        "name": str(tmp_path / "bin" / "kube-apiserver"),
        "result": True,
        "changes": {},
        "comment": second["comment"],
    }
    assert "up to date" in second["comment"]
    assert http_server.count() == 1


def test_managed_reports_old_and_new_digest_on_upgrade(state, http_server, tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "kube-apiserver").write_bytes(OLD)
    url = http_server.serve("/kube-apiserver", BODY)
    ret = managed(state, tmp_path, url)
    assert ret["changes"]["digest"] == {"old": f"sha256:{hashlib.sha256(OLD).hexdigest()}", "new": f"sha256:{DIGEST}"}
    assert (tmp_path / "bin" / "kube-apiserver").read_bytes() == BODY


def test_managed_test_mode_is_honest_and_touches_nothing(state, http_server, tmp_path):
    url = http_server.serve("/kube-apiserver", BODY)
    ret = managed(state, tmp_path, url, test=True)
    assert ret["result"] is None
    assert ret["changes"] == {"digest": {"old": None, "new": f"sha256:{DIGEST}"}}
    assert not (tmp_path / "bin").exists() and not (tmp_path / "cache").exists()
    assert http_server.count() == 0
    managed(state, tmp_path, url)
    up_to_date = managed(state, tmp_path, url, test=True)
    assert up_to_date["result"] is True and up_to_date["changes"] == {}


def test_managed_wrong_digest_fails_and_keeps_the_old_binary(state, http_server, tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "kube-apiserver").write_bytes(OLD)
    url = http_server.serve("/kube-apiserver", BODY)
    ret = managed(state, tmp_path, url, digest="a" * 64)
    assert ret["result"] is False and ret["changes"] == {}
    assert f"expected {'a' * 64}, got {DIGEST}" in ret["comment"] and url in ret["comment"]
    assert (tmp_path / "bin" / "kube-apiserver").read_bytes() == OLD
    assert os.listdir(tmp_path / "bin") == ["kube-apiserver"]


def test_managed_without_digest_fails_naming_the_pins_key(state, http_server, tmp_path):
    ret = managed(state, tmp_path, http_server.url("/x"), digest="None")
    assert ret["result"] is False and "k8s:artifacts:pins:" in ret["comment"]
    assert http_server.count() == 0


def test_managed_passes_the_download_options_on_and_refuses_unknown_ones(state, http_server, tmp_path):
    url = http_server.serve("/kube-apiserver", BODY)
    small = managed(state, tmp_path, url, max_bytes=1000, retries=0)
    assert small["result"] is False and "1000" in small["comment"], small
    typo = managed(state, tmp_path, url, retires=2)
    assert typo["result"] is False and "unknown argument(s) 'retires'" in typo["comment"], typo
    assert typo["changes"] == {} and not (tmp_path / "bin" / "kube-apiserver").exists()
    assert http_server.count() == 1  # only the download that max_bytes cut short


def test_managed_from_resolve_as_the_formulas_use_it(art, state, http_server, make_settings, tmp_path):
    url = http_server.serve(f"/release/v{K8S_VERSION}/amd64/kube-apiserver", BODY)
    config = make_settings(
        {
            "nodes": NODES,
            "artifacts": {
                "pins": {
                    "kube-apiserver": {
                        K8S_VERSION: {
                            "amd64": {
                                "sha256": DIGEST,
                                "url": http_server.url("/release/v{version}/{arch}/kube-apiserver"),
                            }
                        }
                    }
                }
            },
        }
    )
    a = art.resolve("kube-apiserver", config)
    ret = state().managed(
        str(tmp_path / "kube-apiserver"),
        url=a["url"],
        digest=a["digest"],
        hash_type=a["hash_type"],
        cache_dir=str(tmp_path / "cache"),
        user=None,
        group=None,
    )
    assert ret["result"] is True and a["url"] == url
    assert (tmp_path / "kube-apiserver").read_bytes() == BODY


def tgz(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_extracted_is_idempotent_and_honest_in_test_mode(state, http_server, tmp_path):
    data = tgz({"bin/containerd": BODY, "bin/ctr": OLD})
    url = http_server.serve("/containerd.tar.gz", data)
    args = {
        "url": url,
        "members": {"containerd": "bin/containerd", "ctr": "bin/ctr"},
        "digest": hashlib.sha256(data).hexdigest(),
        "cache_dir": str(tmp_path / "cache"),
        "user": None,
        "group": None,
    }
    dest = str(tmp_path / "bin")
    dry = state(test=True).extracted(dest, **args)
    assert dry["result"] is None and len(dry["changes"]) == 2
    assert not (tmp_path / "bin").exists() and http_server.count() == 0
    first = state().extracted(dest, **args)
    assert first["result"] is True and set(first["changes"]) == {f"{dest}/containerd", f"{dest}/ctr"}
    second = state().extracted(dest, **args)
    assert second["result"] is True and second["changes"] == {}
    assert state(test=True).extracted(dest, **args)["result"] is True
    assert http_server.count() == 1


def test_state_module_is_unavailable_without_the_execution_module():
    assert load("k8s_artifact", kind="states").__virtual__()[0] is False
