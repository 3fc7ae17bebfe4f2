"""
kubesalt's artifact cache: verified downloads kept by digest (``<cache_dir>/<hash_type>/<hex>``), so a re-apply, or
another component that needs the same bytes whatever its URL, reuses the entry without a request. An entry is
re-hashed every time it is used; a corrupted one is discarded and downloaded again. Digests taken from opted-in
checksum files are kept in ``<cache_dir>/checksums/``, and the member digests of extracted archives in
``<cache_dir>/manifests/`` (so a re-apply compares files without downloading or decompressing anything).

The digests of installed files are recorded in ``<cache_dir>/installed/`` with the file's stamp (device, inode,
size, mtime, ctime): a re-apply reads an installed file again only when its stamp moved, as git's index does. Any
write, rename over, truncate, chmod or touch moves the ctime, which user space cannot set back; a file that changed
within ``RACY_SECONDS`` before it was hashed is not recorded, since a write in the same clock tick could leave the
stamp unchanged.
"""

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import download, files

log = logging.getLogger(__name__)

DEFAULT_DIR = "/var/cache/kubesalt/artifacts"
# An installed file modified less than this many seconds before it was hashed is not recorded (module docstring).
RACY_SECONDS = 2


def check_dir(cache_dir):
    """
    Refuse a cache directory that is not this process's own: a symlink, not a directory, owned by another user, or
    writable by group or others. Entries are re-hashed at every use, but a cache others can write to could still be
    filled up or raced; kubesalt creates it 0700. A missing directory is fine (it is created at first use).
    """
    try:
        info = os.lstat(cache_dir)
    except FileNotFoundError:
        return cache_dir
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISDIR(info.st_mode):
        raise CommandExecutionError(f"k8s_artifact: cache_dir {cache_dir} is not a directory (a symlink?); refusing")
    if info.st_uid != os.geteuid():
        raise CommandExecutionError(
            f"k8s_artifact: cache_dir {cache_dir} is owned by uid {info.st_uid}, not by uid "
            f"{os.geteuid()} that installs from it; refusing (chown it or remove it)"
        )
    if mode & 0o022:
        raise CommandExecutionError(
            f"k8s_artifact: cache_dir {cache_dir} is mode {mode:04o}: group or others can "
            f"write to it; refusing (chmod 0700 {cache_dir})"
        )
    return cache_dir


class _Corrupt(Exception):
    """A cache entry whose bytes no longer match its digest."""


def _copy_hashing(src, fh, hash_type):
    hasher = hashlib.new(hash_type)
    size = 0
    with open(src, "rb") as source:
        while chunk := source.read(files.CHUNK):
            hasher.update(chunk)
            fh.write(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size


def entry_path(cache_dir, hash_type, digest):
    return os.path.join(cache_dir, hash_type, digest)


def _cache_fill(cache_dir, url, hash_type, digest, net):
    """Make sure the cache has an entry for ``digest`` (downloading it if absent); return its path."""
    entry = entry_path(cache_dir, hash_type, digest)
    if os.path.isfile(entry):
        return entry
    os.makedirs(os.path.dirname(entry), mode=0o700, exist_ok=True)
    with files.atomic(entry, 0o644) as fh:
        actual, size, seconds = download.download_into(url, fh, hash_type, net)
        download.check(url, hash_type, digest, actual, size, "the cache")
    download.log_download(url, hash_type, size, seconds, entry)
    return entry


def open_verified(url, hash_type, digest, cache_dir, net, stack):
    """Return an open, verified file object with the artifact's bytes (from the cache, or a temporary download)."""
    if cache_dir:
        for _ in range(2):
            entry = _cache_fill(cache_dir, url, hash_type, digest, net)
            fh = stack.enter_context(open(entry, "rb"))  # noqa: SIM115 - closed by the caller's ExitStack
            hasher = hashlib.new(hash_type)
            while chunk := fh.read(files.CHUNK):
                hasher.update(chunk)
            if hasher.hexdigest() == digest:
                fh.seek(0)
                log.debug("k8s_artifact: using verified cache entry %s", entry)
                return fh
            fh.close()
            log.warning(
                "k8s_artifact: cache entry %s is corrupted (%s %s); discarding it", entry, hash_type, hasher.hexdigest()
            )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry)
        raise CommandExecutionError(f"k8s_artifact: cache entry {entry} was corrupted twice in a row")
    fh = stack.enter_context(tempfile.TemporaryFile(prefix="k8s_artifact-"))  # noqa: SIM115 - the caller's stack
    actual, size, seconds = download.download_into(url, fh, hash_type, net)
    download.check(url, hash_type, digest, actual, size, "nothing")
    download.log_download(url, hash_type, size, seconds, "a temporary file")
    fh.seek(0)
    return fh


def place(path, url, hash_type, digest, cache_dir, net, mode, uid, gid):
    """Install the verified artifact at ``path`` atomically; return where it came from (downloaded or cache)."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if not cache_dir:
        with files.atomic(path, mode, uid, gid) as fh:
            actual, size, seconds = download.download_into(url, fh, hash_type, net)
            download.check(url, hash_type, digest, actual, size, path)
        download.log_download(url, hash_type, size, seconds, path)
        return "downloaded"
    entry = entry_path(cache_dir, hash_type, digest)
    for _ in range(2):
        source = "cache" if os.path.isfile(entry) else "downloaded"
        _cache_fill(cache_dir, url, hash_type, digest, net)
        try:
            with files.atomic(path, mode, uid, gid) as fh:
                # The cache entry is re-hashed while it is copied: a corrupted entry never reaches path.
                actual, size = _copy_hashing(entry, fh, hash_type)
                if actual != digest:
                    raise _Corrupt(actual)
        except _Corrupt as exc:
            log.warning(
                "k8s_artifact: cache entry %s is corrupted (%s %s); discarding it and downloading again",
                entry,
                hash_type,
                exc,
            )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry)
            continue
        if source == "cache":
            log.info("k8s_artifact: %s -> %s from the cache: %.1f MB, %s verified", url, path, size / 1e6, hash_type)
        return source
    raise CommandExecutionError(
        f"k8s_artifact: cache entry {entry} was corrupted again right after download; check the disk under {cache_dir}"
    )


def _checksum_cache_path(cache_dir, checksum_url, filename, hash_type):
    key = hashlib.sha256(f"{checksum_url}\n{filename}\n{hash_type}".encode()).hexdigest()
    return os.path.join(cache_dir, "checksums", f"{key}.json")


def digest_from_checksum_file(checksum_url, url, hash_type, cache_dir, net, network=True):
    """The digest of ``url``'s file from an opted-in checksum file; cached; None if unknown and ``network`` is off."""
    filename = download.url_filename(url)
    cached = _checksum_cache_path(cache_dir, checksum_url, filename, hash_type) if cache_dir else None
    if cached and os.path.isfile(cached):
        with contextlib.suppress(ValueError, OSError, SaltInvocationError), open(cached, encoding="utf-8") as fh:
            return download.check_digest(json.load(fh)["digest"], hash_type)
    if not network:
        return None
    try:
        digest = download.parse_checksums(download.fetch_text(checksum_url, net), filename, hash_type)
    except CommandExecutionError as exc:
        raise CommandExecutionError(f"{exc} ({checksum_url})") from None
    log.info(
        "k8s_artifact: %s digest of %s taken from the opted-in checksum file %s: %s",
        hash_type,
        filename,
        checksum_url,
        digest,
    )
    if cached:
        os.makedirs(os.path.dirname(cached), mode=0o700, exist_ok=True)
        with files.atomic(cached, 0o644) as fh:
            fh.write(
                json.dumps(
                    {"checksum_url": checksum_url, "filename": filename, "hash_type": hash_type, "digest": digest}
                ).encode()
            )
    return digest


def _manifest_path(cache_dir, hash_type, digest):
    return os.path.join(cache_dir, "manifests", hash_type, f"{digest}.json")


def manifest_load(cache_dir, hash_type, digest):
    """Member digests recorded when the archive was last extracted ({member path: sha256})."""
    if not cache_dir:
        return {}
    try:
        with open(_manifest_path(cache_dir, hash_type, digest), encoding="utf-8") as fh:
            data = json.load(fh).get("members") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)}


def manifest_save(cache_dir, hash_type, digest, member_digests):
    if not cache_dir:
        return
    data = manifest_load(cache_dir, hash_type, digest)
    data.update(member_digests)
    path = _manifest_path(cache_dir, hash_type, digest)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with files.atomic(path, 0o644) as fh:
        fh.write(json.dumps({"archive": tag(hash_type, digest), "members": data}, indent=1, sort_keys=True).encode())


def cached_readonly(cache_dir, hash_type, digest, stack):
    """The cache entry as a verified open file, or None; never downloads, deletes or writes (test mode)."""
    entry = entry_path(cache_dir, hash_type, digest) if cache_dir else None
    if not entry or not os.path.isfile(entry):
        return None
    fh = stack.enter_context(open(entry, "rb"))  # noqa: SIM115 - closed by the caller's ExitStack
    hasher = hashlib.new(hash_type)
    while chunk := fh.read(files.CHUNK):
        hasher.update(chunk)
    if hasher.hexdigest() != digest:
        return None
    fh.seek(0)
    return fh


def _installed_path(cache_dir, path, hash_type):
    key = hashlib.sha256(f"{path}\n{hash_type}".encode()).hexdigest()
    return os.path.join(cache_dir, "installed", f"{key}.json")


def installed_digest(path, hash_type, cache_dir, record=True):
    """
    The digest of the installed file at ``path`` (:func:`kubesalt.files.digest`): the one recorded in ``cache_dir``
    when the file's stamp is the recorded one, else read and hashed, and recorded when ``record`` (not in test mode)
    and the file is not racy (module docstring). Without ``cache_dir`` the file is always hashed.
    """
    if not cache_dir:
        return files.digest(path, hash_type)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    record_path = _installed_path(cache_dir, path, hash_type)
    if stat.S_ISREG(info.st_mode):
        recorded = None
        with contextlib.suppress(OSError, ValueError, AttributeError, SaltInvocationError):
            with open(record_path, encoding="utf-8") as fh:
                data = json.load(fh)
            if data.get("path") == path and data.get("stamp") == files.stamp(info):
                recorded = download.check_digest(data.get("digest"), hash_type)
        if recorded:
            return recorded
    digest, stamp = files.digest_stamped(path, hash_type)
    if record and digest and stamp and time.time() - stamp[4] / 1e9 > RACY_SECONDS:
        os.makedirs(os.path.dirname(record_path), mode=0o700, exist_ok=True)
        with files.atomic(record_path, 0o600) as fh:
            fh.write(json.dumps({"path": path, "hash_type": hash_type, "digest": digest, "stamp": stamp}).encode())
    return digest


def tag(hash_type, digest):
    return f"{hash_type}:{digest}" if digest else None
