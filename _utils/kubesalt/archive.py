"""
Safe extraction of selected files out of a tar archive (.tar.gz, .tgz, .tar.xz, .tar).

kubesalt writes the content of the selected members as regular files named by the ``members`` mapping; it never
creates links, device nodes or directories from an archive. An archive is refused as a whole if any member has an
absolute path or a ``..`` component, is a symlink or hardlink whose target leaves the archive, or is a device file
or FIFO. A selected member that is a link inside the archive is followed to the regular file it names. Each file is
written to a temporary file next to its destination and renamed over it only when its content differs.
"""

import contextlib
import hashlib
import os
import posixpath
import re
import tarfile
import tempfile

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import cache, files

_MAX_LINK_HOPS = 8


def _norm(name):
    return posixpath.normpath(str(name))


def escapes(path):
    norm = posixpath.normpath(path)
    return norm == ".." or norm.startswith(("../", "/"))


def check_members(members):
    """Validate ``members`` ({file name: member path}) and normalise the member paths."""
    if not isinstance(members, dict) or not members:
        raise SaltInvocationError(
            f"k8s_artifact: members '{members}' must be a non-empty mapping of file name -> "
            "archive member path, e.g. {etcd: etcd-v3.6.14-linux-amd64/etcd}"
        )
    result = {}
    for dest, member in members.items():
        dest, member = str(dest), str(member)
        if not dest or "/" in dest or "\0" in dest or dest in (".", ".."):
            raise SaltInvocationError(f"k8s_artifact: members: '{dest}' must be a plain file name (no '/')")
        if not member or member.startswith("/") or ".." in member.split("/"):
            raise SaltInvocationError(
                f"k8s_artifact: members:{dest}: '{member}' must be a relative member path without '..'"
            )
        result[dest] = _norm(member)
    return result


def _unsafe(url, name, why):
    return CommandExecutionError(f"k8s_artifact: refusing archive {url}: member '{name}' {why}. Nothing was extracted.")


def _check_member(info, url):
    """Refuse members that could write outside the destination or create special files; return the normal path."""
    name = info.name
    if name.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", name):
        raise _unsafe(url, name, "has an absolute path")
    if ".." in re.split(r"[\\/]", name):
        raise _unsafe(url, name, "has a '..' path component")
    norm = _norm(name)
    if info.issym():
        if info.linkname.startswith("/") or escapes(posixpath.join(posixpath.dirname(norm), info.linkname)):
            raise _unsafe(url, name, f"is a symlink to '{info.linkname}', outside the archive")
    elif info.islnk():
        if info.linkname.startswith("/") or ".." in info.linkname.split("/"):
            raise _unsafe(url, name, f"is a hardlink to '{info.linkname}', outside the archive")
    elif info.ischr() or info.isblk():
        raise _unsafe(url, name, "is a device file")
    elif info.isfifo():
        raise _unsafe(url, name, "is a FIFO")
    elif not (info.isreg() or info.isdir()):
        raise _unsafe(url, name, f"has the unsupported tar type {info.type!r}")
    return norm


def _follow(info, index, url):
    """The regular member a selected member is, or links to (inside the archive)."""
    for _ in range(_MAX_LINK_HOPS):
        if info.isreg():
            return info
        if info.isdir():
            raise CommandExecutionError(f"k8s_artifact: {url}: member '{info.name}' is a directory, not a file")
        if info.islnk():
            target = _norm(info.linkname)
        else:
            target = posixpath.normpath(posixpath.join(posixpath.dirname(_norm(info.name)), info.linkname))
        if target not in index:
            raise CommandExecutionError(
                f"k8s_artifact: {url}: member '{info.name}' links to '{info.linkname}', which is not in the archive"
            )
        info = index[target]
    raise CommandExecutionError(f"k8s_artifact: {url}: member '{info.name}': too many links (a loop?)")


def select_members(tf, members, url):
    """Check every member of the archive, then map each destination name to the regular member to write."""
    index = {}
    try:
        for info in tf.getmembers():
            index[_check_member(info, url)] = info
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CommandExecutionError(f"k8s_artifact: {url} is not a readable tar archive: {exc}") from None
    selected = {}
    for dest, member in members.items():
        if member not in index:
            names = ", ".join(sorted(n for n in index if not index[n].isdir())[:20])
            raise CommandExecutionError(
                f"k8s_artifact: {url} has no member '{member}' (for {dest}); its files include: {names}"
            )
        selected[dest] = _follow(index[member], index, url)
    return selected


def _member_chunks(tf, info):
    source = tf.extractfile(info)
    with source:
        while chunk := source.read(files.CHUNK):
            yield chunk


def hash_selected(tf, selected):
    digests = {}
    for dest, info in sorted(selected.items(), key=lambda item: item[1].offset_data):
        hasher = hashlib.sha256()
        for chunk in _member_chunks(tf, info):
            hasher.update(chunk)
        digests[dest] = hasher.hexdigest()
    return digests


def extract_selected(tf, selected, paths, current, mode, uid, gid):
    """Write each selected member to a temporary file next to its destination, then rename those that differ."""
    temps, digests, changes = {}, {}, {}
    try:
        for dest, info in sorted(selected.items(), key=lambda item: item[1].offset_data):
            fd, temps[dest] = tempfile.mkstemp(
                dir=os.path.dirname(paths[dest]), prefix=f".{dest}.", suffix=files.TMP_SUFFIX
            )
            hasher = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for chunk in _member_chunks(tf, info):
                    hasher.update(chunk)
                    out.write(chunk)
                out.flush()
                if uid != -1 or gid != -1:
                    os.fchown(out.fileno(), uid, gid)
                os.fchmod(out.fileno(), mode)
                os.fsync(out.fileno())
            digests[dest] = hasher.hexdigest()
        for dest in paths:
            path = paths[dest]
            if digests[dest] == current[dest]:
                os.unlink(temps.pop(dest))
                meta = files.meta_changes(path, mode, uid, gid)
                if meta:
                    files.fix_meta(path, mode, uid, gid)
                    changes[path] = meta
            else:
                os.replace(temps.pop(dest), path)
                changes[path] = {
                    "digest": {"old": cache.tag("sha256", current[dest]), "new": cache.tag("sha256", digests[dest])}
                }
    finally:
        for tmp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    for directory in {os.path.dirname(p) for p in paths.values()}:
        files.fsync_dir(directory)
    return digests, changes


def archive_changes(paths, current, expected, mode, uid, gid):
    changes = {}
    for dest, path in paths.items():
        if current[dest] != expected[dest]:
            changes[path] = {
                "digest": {"old": cache.tag("sha256", current[dest]), "new": cache.tag("sha256", expected[dest])}
            }
        elif files.meta_changes(path, mode, uid, gid):
            changes[path] = files.meta_changes(path, mode, uid, gid)
    return changes
