"""k8s_artifact.install: verified, atomic, cached downloads against a real HTTP server on 127.0.0.1
(tests/support/httpserver.py) that counts requests and misbehaves on demand. No mocks of requests or of the disk."""

import hashlib
import json
import logging
import os
import pathlib
import time

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import files
from tests.support.httpserver import http_server  # noqa: F401 - pytest fixture

BODY = os.urandom(3 * 1024 * 1024 + 17)  # several 1 MiB chunks, not a multiple of the chunk size
DIGEST = hashlib.sha256(BODY).hexdigest()
OLD = b"#!/bin/sh\necho previous binary\n"
FAST = {"retries": 0, "backoff": 0.01, "connect_timeout": 2, "read_timeout": 2}


@pytest.fixture
def target(tmp_path):
    """An installed 'previous' binary the failure tests must leave byte-identical."""
    path = tmp_path / "bin" / "kubelet"
    path.parent.mkdir()
    path.write_bytes(OLD)
    path.chmod(0o755)
    return path


def leftovers(directory):
    return [p for p in os.listdir(directory) if p.endswith(files.TMP_SUFFIX)]


def test_good_download_installs_verified_file_with_mode_and_logs_one_line(art, http_server, tmp_path, caplog):
    url = http_server.serve("/release/kubelet", BODY)
    dest = tmp_path / "bin" / "kubelet"
    result = art.install(str(dest), url, DIGEST, cache_dir=str(tmp_path / "cache"), user=None, group=None, **FAST)
    assert dest.read_bytes() == BODY
    assert oct(dest.stat().st_mode & 0o7777) == "0o755"
    assert result["changes"] == {"digest": {"old": None, "new": f"sha256:{DIGEST}"}}
    assert (tmp_path / "cache" / "sha256" / DIGEST).read_bytes() == BODY
    assert http_server.count("/release/kubelet") == 1
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(lines) == 1 and url in lines[0] and "MB/s" in lines[0] and "sha256 verified" in lines[0]


def test_sha512_digest_is_verified(art, http_server, tmp_path):
    digest = hashlib.sha512(BODY).hexdigest()
    url = http_server.serve("/kubectl", BODY)
    dest = tmp_path / "kubectl"
    art.install(str(dest), url, digest, hash_type="sha512", cache_dir=str(tmp_path / "c"), user=None, group=None)
    assert dest.read_bytes() == BODY
    assert (tmp_path / "c" / "sha512" / digest).is_file()


def test_wrong_digest_is_refused_and_old_binary_kept(art, http_server, target, tmp_path):
    url = http_server.serve("/kubelet", BODY)
    wrong = "0" * 64
    with pytest.raises(CommandExecutionError) as exc:
        art.install(str(target), url, wrong, cache_dir=str(tmp_path / "cache"), **FAST)
    message = str(exc.value)
    assert f"expected {wrong}" in message and f"got {DIGEST}" in message and url in message
    assert target.read_bytes() == OLD
    assert leftovers(target.parent) == []
    assert not list((tmp_path / "cache" / "sha256").iterdir())


def test_wrong_digest_without_cache_leaves_no_temp_file(art, http_server, target):
    url = http_server.serve("/kubelet", BODY)
    with pytest.raises(CommandExecutionError, match="sha256 mismatch"):
        art.install(str(target), url, "f" * 64, cache_dir=None, **FAST)
    assert target.read_bytes() == OLD
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("fault", ["truncate", "reset"])
def test_body_cut_mid_stream_is_retried_then_refused_and_old_kept(art, http_server, target, tmp_path, fault):
    url = http_server.serve("/kubelet", BODY, fault=fault)
    with pytest.raises(CommandExecutionError, match="after 2 attempt"):
        art.install(str(target), url, DIGEST, cache_dir=str(tmp_path / "cache"), **{**FAST, "retries": 1})
    assert http_server.count("/kubelet") == 2
    assert target.read_bytes() == OLD
    assert leftovers(target.parent) == []
    assert leftovers(tmp_path / "cache" / "sha256") == []


def test_truncated_body_without_content_length_is_caught_by_the_digest(art, http_server, target):
    url = http_server.serve("/kubelet", BODY[:1000], fault="no_length")
    with pytest.raises(CommandExecutionError) as exc:
        art.install(str(target), url, DIGEST, cache_dir=None, **FAST)
    assert f"expected {DIGEST}" in str(exc.value) and "(1000 bytes)" in str(exc.value)
    assert target.read_bytes() == OLD


def test_http_404_fails_fast_without_retry(art, http_server, target):
    url = http_server.url("/missing")
    with pytest.raises(CommandExecutionError, match="HTTP 404.*not retried"):
        art.install(str(target), url, DIGEST, cache_dir=None, retries=3, backoff=0.01)
    assert http_server.count("/missing") == 1
    assert target.read_bytes() == OLD


def test_http_500_is_retried_then_fails(art, http_server, target):
    url = http_server.serve("/kubelet", BODY, status=500)
    with pytest.raises(CommandExecutionError, match="failed after 3 attempt.*HTTP 500"):
        art.install(str(target), url, DIGEST, cache_dir=None, retries=2, backoff=0.01)
    assert http_server.count("/kubelet") == 3
    assert target.read_bytes() == OLD


def test_transient_503_then_success_installs(art, http_server, target):
    url = http_server.serve("/kubelet", BODY, status=503, times=1)
    art.install(str(target), url, DIGEST, cache_dir=None, retries=2, backoff=0.01, user=None, group=None)
    assert http_server.count("/kubelet") == 2
    assert target.read_bytes() == BODY


@pytest.mark.parametrize("fault", ["stall", "stall_headers"])
def test_stalled_server_times_out_within_bounded_time(art, http_server, target, fault):
    url = http_server.serve("/kubelet", BODY, fault=fault, stall=20)
    read_timeout, retries = 0.5, 1
    start = time.monotonic()
    with pytest.raises(CommandExecutionError, match="(?i)timed out"):
        art.install(
            str(target),
            url,
            DIGEST,
            cache_dir=None,
            connect_timeout=1,
            read_timeout=read_timeout,
            retries=retries,
            backoff=0.01,
        )
    elapsed = time.monotonic() - start
    # Loose bound: (attempts x read timeout) is 1 s; the server would stall 20 s per attempt.
    assert elapsed < 3 * (retries + 1) * (1 + read_timeout)
    assert http_server.count("/kubelet") == retries + 1
    assert target.read_bytes() == OLD
    assert leftovers(target.parent) == []


def test_redirect_chain_is_followed(art, http_server, tmp_path):
    http_server.serve("/final/kubelet", BODY)
    http_server.redirect("/hop2", "/final/kubelet", status=301)
    url = http_server.redirect("/hop1", http_server.url("/hop2"))
    dest = tmp_path / "kubelet"
    art.install(str(dest), url, DIGEST, cache_dir=None, user=None, group=None, **FAST)
    assert dest.read_bytes() == BODY
    assert [http_server.count(p) for p in ("/hop1", "/hop2", "/final/kubelet")] == [1, 1, 1]


def test_redirect_loop_is_bounded_and_not_retried(art, http_server, target):
    url = http_server.redirect("/loop", "/loop")
    with pytest.raises(CommandExecutionError, match="more than 3 redirects"):
        art.install(str(target), url, DIGEST, cache_dir=None, max_redirects=3, retries=2, backoff=0.01)
    assert http_server.count("/loop") == 4  # the first request and 3 redirects, once
    assert target.read_bytes() == OLD


def test_cache_hit_makes_no_second_request_even_from_another_url(art, http_server, tmp_path):
    url = http_server.serve("/kube-proxy", BODY)
    cache = str(tmp_path / "cache")
    art.install(str(tmp_path / "a" / "one"), url, DIGEST, cache_dir=cache, user=None, group=None)
    result = art.install(
        str(tmp_path / "b" / "two"), http_server.url("/gone"), DIGEST, cache_dir=cache, user=None, group=None
    )
    assert (tmp_path / "b" / "two").read_bytes() == BODY
    assert "from the cache" in result["comment"]
    assert http_server.count() == 1


def test_corrupted_cache_entry_is_discarded_and_downloaded_again(art, http_server, tmp_path):
    url = http_server.serve("/kubelet", BODY)
    cache = tmp_path / "cache"
    art.install(str(tmp_path / "first"), url, DIGEST, cache_dir=str(cache), user=None, group=None)
    entry = cache / "sha256" / DIGEST
    entry.write_bytes(b"bit rot" + BODY[7:])
    art.install(str(tmp_path / "second"), url, DIGEST, cache_dir=str(cache), user=None, group=None)
    assert (tmp_path / "second").read_bytes() == BODY
    assert entry.read_bytes() == BODY
    assert http_server.count("/kubelet") == 2
    assert leftovers(tmp_path) == []


def test_second_apply_changes_nothing_and_makes_no_request(art, http_server, tmp_path):
    url = http_server.serve("/kubelet", BODY)
    dest = str(tmp_path / "kubelet")
    art.install(dest, url, DIGEST, cache_dir=None, user=None, group=None)
    again = art.install(dest, url, DIGEST, cache_dir=None, user=None, group=None)
    assert again["changes"] == {}
    assert http_server.count() == 1


def test_wrong_mode_is_fixed_in_place_without_download(art, http_server, tmp_path):
    url = http_server.serve("/kubelet", BODY)
    dest = tmp_path / "kubelet"
    dest.write_bytes(BODY)
    dest.chmod(0o600)
    result = art.install(str(dest), url, DIGEST, mode="0750", cache_dir=None, user=None, group=None)
    assert result["changes"] == {"mode": {"old": "0600", "new": "0750"}}
    assert dest.stat().st_mode & 0o7777 == 0o750
    assert http_server.count() == 0


def test_test_mode_writes_nothing_and_makes_no_request(art, http_server, target, tmp_path):
    url = http_server.serve("/kubelet", BODY)
    cache = tmp_path / "cache"
    result = art.install(str(target), url, DIGEST, cache_dir=str(cache), test=True)
    old = hashlib.sha256(OLD).hexdigest()
    assert result["changes"] == {"digest": {"old": f"sha256:{old}", "new": f"sha256:{DIGEST}"}}
    assert target.read_bytes() == OLD
    assert not cache.exists()
    assert http_server.count() == 0


@pytest.mark.parametrize("digest", [None, "", "None"])
def test_missing_digest_is_refused_naming_the_pins_key(art, http_server, target, digest):
    url = http_server.serve("/kubelet", BODY)
    with pytest.raises(CommandExecutionError, match="k8s:artifacts:pins:<component>:<version>:<arch>"):
        art.install(str(target), url, digest, cache_dir=None)
    assert http_server.count() == 0
    assert target.read_bytes() == OLD


@pytest.mark.parametrize(
    "kwargs, bad",
    [
        ({"digest": "abc"}, "'abc'"),
        ({"hash_type": "md5"}, "'md5'"),
        ({"mode": "rwx"}, "'rwx'"),
        ({"url": "ftp://example/x"}, "'ftp://example/x'"),
        ({"user": "no-such-user-k8s"}, "'no-such-user-k8s'"),
        ({"retries": -1}, "'-1'"),
        ({"timeout": 5}, "unknown argument.*'timeout'.*the download options are hash_type, checksum_url"),
    ],
)
def test_bad_arguments_are_rejected_naming_the_value(art, target, kwargs, bad):
    args = {"url": "http://127.0.0.1:9/kubelet", "digest": DIGEST, "cache_dir": None, **kwargs}
    with pytest.raises(SaltInvocationError, match=bad):
        art.install(str(target), **args)
    assert target.read_bytes() == OLD


# -- what a hostile mirror cannot do ----------------------------------------------------------------------------------
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "no-content-length"])
def test_a_download_larger_than_max_bytes_is_refused_and_nothing_is_written(
    art, http_server, target, tmp_path, chunked
):
    url = http_server.serve("/release/kubelet", BODY, fault="no_length" if chunked else None)
    cache = tmp_path / "cache"
    with pytest.raises(CommandExecutionError, match="allowed here"):
        art.install(str(target), url, DIGEST, cache_dir=str(cache), max_bytes=1024 * 1024, **FAST)
    assert target.read_bytes() == OLD and leftovers(target.parent) == []
    assert not any(p.is_file() for p in cache.rglob("*"))


@pytest.mark.parametrize("problem", ["group-writable", "other owner", "symlink"])
def test_a_cache_directory_others_can_write_is_refused(art, http_server, target, tmp_path, problem):
    url = http_server.serve("/release/kubelet", BODY)
    cache = tmp_path / "cache"
    if problem == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        cache.symlink_to(tmp_path / "elsewhere")
    else:
        cache.mkdir(mode=0o700)
    if problem == "group-writable":
        cache.chmod(0o770)
    if problem == "other owner":
        if os.geteuid() != 0:
            pytest.skip("needs root to give the directory to another user")
        os.chown(cache, 65534, 65534)
    with pytest.raises(CommandExecutionError, match=f"cache_dir {cache} "):
        art.install(str(target), url, DIGEST, cache_dir=str(cache), **FAST)
    assert target.read_bytes() == OLD and http_server.requests == []


# -- installed files are read again only when their stamp moved (kubesalt.cache.installed_digest) --------------------
def kubelet_install(url, dest, cache_dir):
    """k8s_artifact.install's arguments for BODY at ``url`` installed as ``dest`` with the cache ``cache_dir``."""
    return {"name": str(dest), "url": url, "digest": DIGEST, "cache_dir": str(cache_dir), "user": None, "group": None}


@pytest.fixture
def recorded(art, http_server, tmp_path, monkeypatch):
    """(install args, record file): kubelet installed once and its digest recorded. The file was written a moment
    ago, so the racy window is set to 0 s instead of waiting RACY_SECONDS."""
    from kubesalt import cache

    monkeypatch.setattr(cache, "RACY_SECONDS", 0)
    url = http_server.serve("/kubelet", BODY)
    args = kubelet_install(url, tmp_path / "bin" / "kubelet", tmp_path / "cache")
    art.install(**args)
    time.sleep(0.01)
    assert art.install(**args)["changes"] == {}  # hashed the installed file and recorded it
    [record] = (tmp_path / "cache" / "installed").iterdir()
    return args, record


def test_an_unchanged_installed_file_is_taken_from_its_record(art, recorded):
    """The record is what a re-apply uses: a record edited to another digest (same stamp) makes the file look stale,
    which only happens when the file is not read again."""
    args, record = recorded
    data = json.loads(record.read_text())
    assert data["path"] == args["name"] and data["digest"] == DIGEST
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    record.write_text(json.dumps({**data, "digest": "0" * 64}))
    result = art.install(**args)
    assert result["changes"] == {"digest": {"old": "sha256:" + "0" * 64, "new": f"sha256:{DIGEST}"}}
    assert pathlib.Path(args["name"]).read_bytes() == BODY


def test_a_file_changed_in_place_with_its_mtime_put_back_is_read_again(art, recorded):
    """Same size, same mtime, but the ctime moved: the stamp differs, the file is hashed and replaced."""
    args, _ = recorded
    dest = pathlib.Path(args["name"])
    before = dest.stat()
    with open(dest, "r+b") as fh:
        fh.write(b"X" * 16)
    os.utime(dest, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert dest.stat().st_size == before.st_size and dest.stat().st_mtime_ns == before.st_mtime_ns
    result = art.install(**args)
    assert result["changes"]["digest"]["new"] == f"sha256:{DIGEST}"
    assert result["changes"]["digest"]["old"] != f"sha256:{DIGEST}"
    assert dest.read_bytes() == BODY


def test_a_file_written_just_now_is_not_recorded(art, http_server, tmp_path):
    """Inside the racy window (RACY_SECONDS, 2 s) a same-tick write could keep the stamp: no record is kept."""
    url = http_server.serve("/kubelet", BODY)
    args = kubelet_install(url, tmp_path / "k", tmp_path / "c")
    art.install(**args)
    assert art.install(**args)["changes"] == {}
    assert not (tmp_path / "c" / "installed").exists()


def test_test_mode_records_nothing(art, http_server, tmp_path, monkeypatch):
    from kubesalt import cache

    monkeypatch.setattr(cache, "RACY_SECONDS", 0)
    dest = tmp_path / "kubelet"
    dest.write_bytes(BODY)
    dest.chmod(0o755)
    url = http_server.serve("/kubelet", BODY)
    result = art.install(str(dest), url, DIGEST, cache_dir=str(tmp_path / "c"), user=None, group=None, test=True)
    assert result["changes"] == {}
    assert not (tmp_path / "c").exists()
