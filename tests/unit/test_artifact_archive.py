"""k8s_artifact.extract: selected members of a verified tar archive, written atomically and only when they differ;
archives with unsafe members are refused whole. Archives are built here with tarfile (including hostile members
that tarfile happily writes) and served by a real HTTP server on 127.0.0.1."""

import hashlib
import io
import os
import tarfile

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support.httpserver import http_server  # noqa: F401 - pytest fixture

ETCD = os.urandom(200_000)
ETCDCTL = os.urandom(150_000)
README = b"etcd release\n"
MEMBERS = {"etcd": "etcd-v3.6.14-linux-amd64/etcd", "etcdctl": "etcd-v3.6.14-linux-amd64/etcdctl"}


def sha(data):
    return hashlib.sha256(data).hexdigest()


def tgz(entries):
    """entries: (name, bytes) for files, or (name, TarInfo-type, extra) for special members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for entry in entries:
            info = tarfile.TarInfo(entry[0])
            info.mode = 0o755
            if len(entry) == 2:
                info.size = len(entry[1])
                tf.addfile(info, io.BytesIO(entry[1]))
            else:
                info.type = entry[1]
                if entry[1] in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                    info.linkname = entry[2]
                elif entry[1] == tarfile.CHRTYPE:
                    info.devmajor, info.devminor = 1, 3
                elif entry[1] == tarfile.DIRTYPE:
                    info.mode = 0o755
                tf.addfile(info)
    return buffer.getvalue()


GOOD = [
    ("etcd-v3.6.14-linux-amd64", tarfile.DIRTYPE, None),
    ("etcd-v3.6.14-linux-amd64/etcd", ETCD),
    ("etcd-v3.6.14-linux-amd64/etcdctl", ETCDCTL),
    ("etcd-v3.6.14-linux-amd64/README.md", README),
]


@pytest.fixture
def archive(http_server):
    data = tgz(GOOD)
    return http_server.serve("/etcd-v3.6.14-linux-amd64.tar.gz", data), sha(data)


def run(art, dest, url, digest, cache, **kwargs):
    return art.extract(
        str(dest), url, MEMBERS, digest, cache_dir=str(cache) if cache else None, user=None, group=None, **kwargs
    )


def tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_selected_members_are_extracted_with_mode(art, http_server, archive, tmp_path):
    url, digest = archive
    dest = tmp_path / "bin"
    result = run(art, dest, url, digest, tmp_path / "cache")
    assert (dest / "etcd").read_bytes() == ETCD and (dest / "etcdctl").read_bytes() == ETCDCTL
    assert tree(dest) == ["etcd", "etcdctl"]
    assert (dest / "etcd").stat().st_mode & 0o7777 == 0o755
    assert result["changes"] == {
        str(dest / "etcd"): {"digest": {"old": None, "new": f"sha256:{sha(ETCD)}"}},
        str(dest / "etcdctl"): {"digest": {"old": None, "new": f"sha256:{sha(ETCDCTL)}"}},
    }


def test_second_extract_changes_nothing_and_makes_no_request(art, http_server, archive, tmp_path):
    url, digest = archive
    run(art, tmp_path / "bin", url, digest, tmp_path / "cache")
    again = run(art, tmp_path / "bin", url, digest, tmp_path / "cache")
    assert again["changes"] == {}
    assert http_server.count() == 1


def test_only_the_modified_member_is_rewritten(art, http_server, archive, tmp_path):
    url, digest = archive
    dest = tmp_path / "bin"
    run(art, dest, url, digest, tmp_path / "cache")
    (dest / "etcdctl").write_bytes(b"tampered")
    inode = (dest / "etcd").stat().st_ino
    result = run(art, dest, url, digest, tmp_path / "cache")
    assert list(result["changes"]) == [str(dest / "etcdctl")]
    assert (dest / "etcdctl").read_bytes() == ETCDCTL
    assert (dest / "etcd").stat().st_ino == inode
    assert http_server.count() == 1  # the archive came from the cache


def test_without_a_cache_matching_files_are_left_untouched(art, http_server, archive, tmp_path):
    url, digest = archive
    dest = tmp_path / "bin"
    run(art, dest, url, digest, None)
    inode = (dest / "etcd").stat().st_ino
    again = run(art, dest, url, digest, None)
    assert again["changes"] == {}
    assert (dest / "etcd").stat().st_ino == inode
    assert [p for p in os.listdir(dest) if p.startswith(".")] == []


def test_test_mode_extracts_nothing_and_makes_no_request(art, http_server, archive, tmp_path):
    url, digest = archive
    result = run(art, tmp_path / "bin", url, digest, tmp_path / "cache", test=True)
    assert set(result["changes"]) == {str(tmp_path / "bin" / "etcd"), str(tmp_path / "bin" / "etcdctl")}
    assert not (tmp_path / "bin").exists() and not (tmp_path / "cache").exists()
    assert http_server.count() == 0


def test_wrong_archive_digest_is_refused_and_files_kept(art, http_server, archive, tmp_path):
    url, digest = archive
    dest = tmp_path / "bin"
    dest.mkdir()
    (dest / "etcd").write_bytes(b"old etcd")
    with pytest.raises(CommandExecutionError, match=f"expected {'1' * 64}, got {digest}"):
        run(art, dest, url, "1" * 64, tmp_path / "cache")
    assert tree(dest) == ["etcd"] and (dest / "etcd").read_bytes() == b"old etcd"


HOSTILE = {
    "dotdot": ([("../evil", b"x")], "'..'"),
    "nested_dotdot": ([("etcd-v3.6.14-linux-amd64/../../evil", b"x")], "'..'"),
    "absolute": ([("/tmp/k8s-artifact-evil", b"x")], "absolute path"),
    "symlink_escaping": (
        [("etcd-v3.6.14-linux-amd64/link", tarfile.SYMTYPE, "../../../etc/passwd")],
        "symlink to '../../../etc/passwd', outside",
    ),
    "symlink_absolute": ([("etcd-v3.6.14-linux-amd64/link", tarfile.SYMTYPE, "/etc/passwd")], "symlink to"),
    "hardlink_escaping": ([("etcd-v3.6.14-linux-amd64/hard", tarfile.LNKTYPE, "../evil")], "hardlink to"),
    "hardlink_absolute": ([("etcd-v3.6.14-linux-amd64/hard", tarfile.LNKTYPE, "/etc/shadow")], "hardlink to"),
    "device": ([("etcd-v3.6.14-linux-amd64/null", tarfile.CHRTYPE, None)], "device file"),
    "fifo": ([("etcd-v3.6.14-linux-amd64/pipe", tarfile.FIFOTYPE, None)], "FIFO"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_archive_with_unsafe_member_is_refused_whole(art, http_server, tmp_path, case):
    extra, why = HOSTILE[case]
    data = tgz(GOOD + extra)
    url = http_server.serve("/hostile.tar.gz", data)
    dest = tmp_path / "work" / "bin"
    with pytest.raises(CommandExecutionError, match="refusing archive") as exc:
        run(art, dest, url, sha(data), tmp_path / "cache")
    assert why in str(exc.value)
    assert not os.path.lexists("/tmp/k8s-artifact-evil")
    # Nothing anywhere but the verified archive in the cache: not even the good members, nor the destination.
    assert tree(tmp_path) == sorted(["cache", "cache/sha256", f"cache/sha256/{sha(data)}"])


def test_selected_member_that_is_a_link_inside_the_archive_is_written_as_a_regular_file(art, http_server, tmp_path):
    data = tgz(
        GOOD
        + [
            ("bin/etcd", tarfile.SYMTYPE, "../etcd-v3.6.14-linux-amd64/etcd"),
            ("bin/etcdctl", tarfile.LNKTYPE, "etcd-v3.6.14-linux-amd64/etcdctl"),
        ]
    )
    url = http_server.serve("/links.tar.gz", data)
    dest = tmp_path / "bin"
    art.extract(
        str(dest),
        url,
        {"etcd": "bin/etcd", "etcdctl": "./bin/etcdctl"},
        sha(data),
        cache_dir=None,
        user=None,
        group=None,
    )
    assert not (dest / "etcd").is_symlink() and (dest / "etcd").read_bytes() == ETCD
    assert (dest / "etcdctl").read_bytes() == ETCDCTL


def test_missing_member_is_reported_with_what_the_archive_has(art, http_server, archive, tmp_path):
    url, digest = archive
    with pytest.raises(CommandExecutionError, match="no member 'etcd-v3.6.14-linux-amd64/etcdutl'.*etcdctl"):
        art.extract(str(tmp_path / "bin"), url, {"etcdutl": "etcd-v3.6.14-linux-amd64/etcdutl"}, digest, cache_dir=None)
    assert not (tmp_path / "bin").exists()


@pytest.mark.parametrize(
    "members, bad",
    [
        ({"../etcd": "etcd"}, "'../etcd'"),
        ({"etcd": "../etcd"}, "'../etcd'"),
        ({"etcd": "/etcd"}, "'/etcd'"),
        ({}, "members"),
    ],
)
def test_unsafe_members_argument_is_rejected_before_any_request(art, http_server, archive, tmp_path, members, bad):
    url, digest = archive
    with pytest.raises(SaltInvocationError, match=bad):
        art.extract(str(tmp_path / "bin"), url, members, digest, cache_dir=None)
    assert http_server.count() == 0
