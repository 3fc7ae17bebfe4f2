"""
kubesalt artifacts: every binary kubesalt installs comes through this module, verified against a pinned digest.

:depends: requests (a dependency of Salt itself; used for HTTP(S), redirects, TLS and proxies from the environment)

What it guarantees
------------------
* **Verified or refused.** Every download is hashed while it streams (sha256 or sha512) and compared with a digest
  pinned in data (``formulas/k8s/catalogue.yaml`` or ``k8s:artifacts:pins``). There is no option to skip this. A
  digest may instead come from an official checksum file (bare hex, ``hex  filename``, multi-line ``SHA256SUMS``,
  BSD ``SHA256 (file) = hex``) only when ``k8s:artifacts:checksum_urls:<component>`` opts in *and* nothing is pinned
  for that version.
* **Atomic.** A file is written to a temporary file in its destination directory, verified, fsync'ed, given its
  mode and owner, then renamed over the old one (``os.replace``) and the directory is fsync'ed. Any failure leaves
  the previous file byte-identical and removes the temporary file. Archive members are extracted the same way, one
  file at a time.
* **Bounded network behaviour.** Connect and read timeouts (the read timeout bounds every stall, including one
  mid-body); ``retries`` extra attempts on connection errors, timeouts, truncated bodies, HTTP 5xx, 408 and 429,
  with exponential backoff (``backoff * 2**n`` seconds, each wait capped at 30 s); HTTP 4xx fails at once; at most
  ``max_redirects`` redirects. A download that makes no progress therefore gives up after at most
  ``(retries + 1) * (connect_timeout + read_timeout)`` plus the backoff waits. A failed attempt restarts from byte
  0 (no ranged resume). Proxies come from the environment (``https_proxy``, ``no_proxy``; requests does this), and
  so does the CA bundle (``REQUESTS_CA_BUNDLE``).
* **Bytes as published.** Requests are sent with ``Accept-Encoding: identity`` and the body is hashed as received,
  without content decoding, like ``curl`` without ``--compressed``: the digest is that of the published file.
* **Cached by digest.** With a ``cache_dir``, verified downloads are kept as ``<cache_dir>/<hash_type>/<hex>``. A
  re-apply, or another component that needs the same bytes (whatever its URL), reuses the entry without a request.
  An entry is re-hashed every time it is used; a corrupted one is discarded and downloaded again.
* **Idempotent without the network.** An installed file whose digest already matches is left alone and no request
  is made. For archives the digest of every extracted member is recorded next to the cached archive
  (``<cache_dir>/manifests/<hash_type>/<hex>.json``), so a re-apply compares files without downloading or
  decompressing anything. Without a cache directory an archive has to be downloaded to be compared. A digest taken
  from a checksum file is cached too (``<cache_dir>/checksums/``), so a re-apply does not fetch it again.
* **Safe extraction.** kubesalt writes the content of the selected members as regular files named by the
  ``members`` mapping; it never creates links, device nodes or directories from an archive. An archive is refused
  as a whole if any member has an absolute path or a ``..`` component, is a symlink or hardlink whose target
  leaves the archive, or is a device file or FIFO. A selected member that is a link inside the archive is followed
  to the regular file it names.
* **One log line per artifact** at INFO: where it came from (download with size and rate, or the cache) and that it
  was verified. Retries are logged at WARNING.

Mirrors (air-gapped sites)
--------------------------
``k8s:artifacts:mirror`` (a base URL) rewrites every artifact and checksum URL: the scheme and host are replaced and
the upstream host becomes the first path segment::

    https://dl.k8s.io/release/v1.34.10/bin/linux/amd64/kubelet
    -> http://mirror.example:8080/dl.k8s.io/release/v1.34.10/bin/linux/amd64/kubelet

Populate a mirror directory from upstream on a machine that has internet access, verifying every digest, then serve
it with any static web server:

.. code-block:: bash

    salt-call k8s_artifact.mirror_populate /srv/kubesalt-mirror
    salt-call k8s_artifact.mirror_populate /srv/kubesalt-mirror components='[etcd, kubelet]' arches='[amd64, arm64]'
    python3 -m http.server 8080 --directory /srv/kubesalt-mirror

and set ``k8s:artifacts:mirror: http://<that host>:8080``. Nodes still verify everything they fetch from the
mirror against the pinned digests, so the mirror need not be trusted.
"""

import contextlib
import hashlib
import io
import json
import logging
import os
import posixpath
import re
import stat
import tarfile
import tempfile
import time
import urllib.parse

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import requests
    import urllib3

    HAS_REQUESTS = True
except ImportError:  # pragma: no cover - salt itself depends on requests
    HAS_REQUESTS = False

try:
    import grp
    import pwd
except ImportError:  # pragma: no cover - not a POSIX system
    grp = pwd = None

log = logging.getLogger(__name__)

__virtualname__ = "k8s_artifact"

DEFAULT_CACHE_DIR = "/var/cache/kubesalt/artifacts"
HASH_TYPES = {"sha256": 64, "sha512": 128}
PINS_KEY = "k8s:artifacts:pins"
_CHUNK = 1024 * 1024
_BACKOFF_MAX = 30.0
_CHECKSUM_FILE_LIMIT = 1024 * 1024
_MAX_LINK_HOPS = 8
_TMP_SUFFIX = ".k8s_artifact.part"
_NO_DIGEST = (None, "", "None", "none", "null", "Null", "NULL", "~")


def __virtual__():
    if not HAS_REQUESTS:
        return (False, "k8s_artifact: the 'requests' library is not importable (Salt normally depends on it); "
                       "install python3-requests")
    return __virtualname__


class _Retryable(Exception):
    """A transient download failure: worth another attempt."""


class _Corrupt(Exception):
    """A cache entry whose bytes no longer match its digest."""


# --------------------------------------------------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------------------------------------------------
class _Net:
    """Network settings of one operation (validated)."""

    def __init__(self, connect_timeout=10, read_timeout=30, retries=3, backoff=1.0, max_redirects=5):
        self.connect_timeout = _positive("connect_timeout", connect_timeout)
        self.read_timeout = _positive("read_timeout", read_timeout)
        self.backoff = _positive("backoff", backoff, allow_zero=True)
        self.retries = _count("retries", retries, 20)
        self.max_redirects = _count("max_redirects", max_redirects, 30)


def _positive(key, value, allow_zero=False):
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number < 0 or (number == 0 and not allow_zero) or isinstance(value, bool):
        raise SaltInvocationError(f"k8s_artifact: {key}: '{value}' must be a positive number of seconds")
    return number


def _count(key, value, maximum):
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit() \
            or int(value) > maximum:
        raise SaltInvocationError(f"k8s_artifact: {key}: '{value}' must be an integer from 0 to {maximum}")
    return int(value)


def _hash_type(value):
    hash_type = str(value or "").lower()
    if hash_type not in HASH_TYPES:
        raise SaltInvocationError(f"k8s_artifact: hash_type '{value}' is not supported; use sha256 or sha512")
    return hash_type


def _digest(value, hash_type, what="digest"):
    """Normalise a digest argument; None when none is given (Jinja renders a missing one as 'None')."""
    if value in _NO_DIGEST:
        return None
    text = str(value).strip().lower()
    if text.startswith(f"{hash_type}:") or text.startswith(f"{hash_type}="):
        text = text[len(hash_type) + 1:]
    if not re.fullmatch(rf"[0-9a-f]{{{HASH_TYPES[hash_type]}}}", text):
        raise SaltInvocationError(f"k8s_artifact: {what} '{value}' is not a {hash_type} digest "
                                  f"({HASH_TYPES[hash_type]} hex characters)")
    return text


def _url(value, key="url"):
    text = str(value or "")
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SaltInvocationError(f"k8s_artifact: {key} '{value}' is not an http(s) URL")
    return text


def _abspath(value, key="name"):
    text = str(value or "")
    if not os.path.isabs(text):
        raise SaltInvocationError(f"k8s_artifact: {key} '{value}' must be an absolute path")
    return os.path.normpath(text)


def _mode(value):
    text = str(value).strip().strip("'\"").replace("0o", "0")
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise SaltInvocationError(f"k8s_artifact: mode '{value}' is not an octal file mode such as '0755' "
                                  "(quote it in YAML)")
    return mode


def _owner_id(name, kind):
    """uid (kind 'user') or gid (kind 'group') of ``name``; -1 (unchanged) when empty, numbers taken as they are."""
    if name in (None, ""):
        return -1
    if str(name).isdigit():
        return int(name)
    try:
        return pwd.getpwnam(str(name)).pw_uid if kind == "user" else grp.getgrnam(str(name)).gr_gid
    except (KeyError, AttributeError):
        raise SaltInvocationError(f"k8s_artifact: {kind} '{name}' does not exist on this system") from None


def _uid(user):
    return _owner_id(user, "user")


def _gid(group):
    return _owner_id(group, "group")


def _no_digest_error(url):
    return CommandExecutionError(
        f"k8s_artifact: no sha256/sha512 digest for {url}: downloads are never installed unverified. Pin one in "
        f"{PINS_KEY}:<component>:<version>:<arch> (e.g. {{sha256: <hex>}}), or opt in to the official checksum "
        "file with k8s:artifacts:checksum_urls:<component>")


# --------------------------------------------------------------------------------------------------------------------
# Digests, checksum files, mirror URLs
# --------------------------------------------------------------------------------------------------------------------
def file_digest(path, hash_type="sha256"):
    """
    Return the hex digest of the regular file at ``path``, or None when there is no regular file there (missing, or
    a symlink, which is replaced by a regular file when installed).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.file_digest /usr/local/bin/kubelet
        salt-call k8s_artifact.file_digest /usr/local/bin/kubelet sha512
    """
    hash_type = _hash_type(hash_type)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(info.st_mode):
        raise CommandExecutionError(f"k8s_artifact: {path} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        return None
    hasher = hashlib.new(hash_type)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def parse_checksums(text, filename=None, hash_type="sha256"):
    """
    Return the ``hash_type`` digest for ``filename`` from the text of a checksum file. Understands a bare hex digest
    (``kubelet.sha256``), ``hex  filename`` / ``hex *filename`` lines (``sha256sum`` output, multi-line
    ``SHA256SUMS``) and BSD ``SHA256 (filename) = hex`` lines. A line naming another file never matches; a file with
    several entries must name ``filename``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.parse_checksums "$(cat SHA256SUMS)" etcd-v3.6.14-linux-amd64.tar.gz
    """
    hash_type = _hash_type(hash_type)
    size = HASH_TYPES[hash_type]
    entries = []
    for raw in str(text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(rf"([0-9a-fA-F]{{{size}}})(?:\s+\*?(.+))?", line)
        if match:
            entries.append((match.group(1).lower(), match.group(2)))
            continue
        match = re.fullmatch(rf"{hash_type.upper()}\s*\((.+)\)\s*=\s*([0-9a-fA-F]{{{size}}})", line)
        if match:
            entries.append((match.group(2).lower(), match.group(1)))
    if not entries:
        raise CommandExecutionError(f"k8s_artifact: no {hash_type} digest ({size} hex characters) in the checksum "
                                    "file")
    if filename is None or (len(entries) == 1 and entries[0][1] is None):
        found = {digest for digest, _ in entries}
        if len(found) == 1:
            return found.pop()
        raise CommandExecutionError("k8s_artifact: the checksum file lists several files; name the one to use")
    wanted = posixpath.basename(str(filename))
    found = {digest for digest, name in entries
             if name is not None and posixpath.basename(name.strip().lstrip("*")) == wanted}
    if len(found) == 1:
        return found.pop()
    if not found:
        names = ", ".join(sorted({str(n) for _, n in entries}))[:300]
        raise CommandExecutionError(f"k8s_artifact: the checksum file has no {hash_type} entry for '{wanted}' "
                                    f"(it lists: {names})")
    raise CommandExecutionError(f"k8s_artifact: the checksum file lists different digests for '{wanted}'")


def mirror_url(url, mirror):
    """
    Rewrite ``url`` onto the ``mirror`` base URL: scheme and host are replaced, the upstream host becomes the first
    path segment. An empty ``mirror`` returns ``url`` unchanged.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.mirror_url https://dl.k8s.io/release/v1.34.10/bin/linux/amd64/kubelet http://mirror:8080
    """
    if not mirror:
        return url
    base = _url(mirror, "mirror").rstrip("/")
    parsed = urllib.parse.urlsplit(_url(url))
    host = parsed.netloc.rpartition("@")[2]
    rewritten = f"{base}/{host}{parsed.path or '/'}"
    return f"{rewritten}?{parsed.query}" if parsed.query else rewritten


def _filename(url):
    return posixpath.basename(urllib.parse.urlsplit(url).path) or url


def _hash_type_of_checksum_url(url):
    return "sha512" if "sha512" in _filename(url).lower() else "sha256"


# --------------------------------------------------------------------------------------------------------------------
# resolve: catalogue + pins + mirror -> what to download and how to verify it
# --------------------------------------------------------------------------------------------------------------------
def _format(template, key, **values):
    try:
        return str(template).format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise CommandExecutionError(f"k8s_artifact: {key}: '{template}' has an unknown placeholder ({exc}); "
                                    "use {version} and {arch}") from None


def _resolve(component, config, arch=None, mirror=None):
    if not isinstance(config, dict):
        raise SaltInvocationError("k8s_artifact.resolve: config must be the kubesalt settings mapping "
                                  "(k8s.settings / map.jinja)")
    entry = (config.get("catalogue") or {}).get(component)
    if not isinstance(entry, dict):
        raise CommandExecutionError(f"k8s_artifact: component '{component}' is not in the catalogue; pin its url "
                                    f"and digest in {PINS_KEY}:{component}")
    arch = arch or config.get("arch")
    vkey = entry.get("version_key", component)
    version = (config.get("versions") or {}).get(vkey)
    if version in (None, ""):
        raise CommandExecutionError(f"k8s_artifact: k8s:versions:{vkey} is not set; {component} needs a version")
    version = str(version)
    key = f"{PINS_KEY}:{component}:{version}:{arch}"
    pinned = ((entry.get("versions") or {}).get(version) or {}).get(arch) or {}
    template = pinned.get("url") or entry.get("url")
    if not template:
        raise CommandExecutionError(f"k8s_artifact: {component} has no url; set {key}:url")
    upstream = _url(_format(template, f"{key}:url", version=version, arch=arch), f"{key}:url")
    hash_type = digest = checksum_url = upstream_checksum = None
    for candidate in HASH_TYPES:
        if pinned.get(candidate) not in _NO_DIGEST:
            hash_type = candidate
            try:
                digest = _digest(pinned[candidate], candidate)
            except SaltInvocationError:
                raise CommandExecutionError(f"k8s_artifact: {key}:{candidate}: '{pinned[candidate]}' is not a "
                                            f"{candidate} digest ({HASH_TYPES[candidate]} hex characters)") from None
            break
    if digest is None:
        opt_in = ((config.get("artifacts") or {}).get("checksum_urls") or {}).get(component)
        if not opt_in:
            raise CommandExecutionError(
                f"k8s_artifact: no sha256/sha512 digest for {component} {version} ({arch}) in the catalogue or the "
                f"pillar. Pin one in {key} (e.g. {{sha256: <hex>}}), or opt in to the official checksum file with "
                f"k8s:artifacts:checksum_urls:{component}. Unverified downloads are never installed.")
        upstream_checksum = _url(_format(opt_in, f"k8s:artifacts:checksum_urls:{component}", version=version,
                                         arch=arch), f"k8s:artifacts:checksum_urls:{component}")
        checksum_url = mirror_url(upstream_checksum, mirror)
        hash_type = _hash_type_of_checksum_url(upstream_checksum)
    members = {}
    kind = entry.get("type", "binary")
    if kind == "archive":
        for dest, member in (entry.get("members") or {}).items():
            members[str(dest)] = _format(member, f"{PINS_KEY}:{component}:members:{dest}", version=version,
                                         arch=arch)
    elif kind != "binary":
        raise CommandExecutionError(f"k8s_artifact: catalogue type '{kind}' of {component} is not binary or archive")
    return {
        "component": component,
        "version": version,
        "arch": arch,
        "url": mirror_url(upstream, mirror),
        "upstream_url": upstream,
        "hash_type": hash_type,
        "digest": digest,
        "checksum_url": checksum_url,
        "upstream_checksum_url": upstream_checksum,
        "type": kind,
        "members": members,
    }


def resolve(component, config):
    """
    Return how to fetch and verify catalogue ``component`` for the configured version and arch: ``component``,
    ``version``, ``arch``, ``url`` (rewritten onto ``k8s:artifacts:mirror`` when set), ``upstream_url``,
    ``hash_type``, ``digest`` (hex, or None when it comes from an opted-in checksum file), ``checksum_url`` (or None),
    ``upstream_checksum_url``, ``type`` (binary or archive) and ``members`` (destination name -> member path).

    ``config`` is the resolved settings mapping (``k8s`` from ``k8s/map.jinja``, i.e. ``k8s.settings``). A version
    with no pinned digest and no checksum-file opt-in raises an error naming ``k8s:artifacts:pins:...``.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.resolve kubelet "$(salt-call --out=json k8s.config | jq -c .local)"

    In an SLS:

    .. code-block:: jinja

        {%- set a = salt['k8s_artifact.resolve']('kubelet', k8s) %}
    """
    mirror = ((config or {}).get("artifacts") or {}).get("mirror") if isinstance(config, dict) else None
    if mirror:
        _url(mirror, "k8s:artifacts:mirror")
    return _resolve(component, config, mirror=mirror)


# --------------------------------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------------------------------
def _session(net):
    session = requests.Session()
    session.max_redirects = net.max_redirects
    session.headers.update({"User-Agent": f"kubesalt-k8s_artifact requests/{requests.__version__}",
                            "Accept-Encoding": "identity"})
    return session


def _stream_once(session, url, fh, hasher, net, limit=None):
    """One GET of ``url`` into ``fh``; return (size, final URL). Transient failures raise _Retryable."""
    try:
        resp = session.get(url, stream=True, timeout=(net.connect_timeout, net.read_timeout))
    except requests.TooManyRedirects:
        raise CommandExecutionError(f"k8s_artifact: GET {url}: more than {net.max_redirects} redirects "
                                    "(k8s_artifact max_redirects); not retried") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Retryable(f"{type(exc).__name__}: {exc}") from None
    except requests.RequestException as exc:
        raise CommandExecutionError(f"k8s_artifact: GET {url}: {type(exc).__name__}: {exc}") from None
    with resp:
        if resp.status_code != 200:
            where = f" (from {resp.url})" if resp.url != url else ""
            message = f"HTTP {resp.status_code} {resp.reason}{where}"
            if resp.status_code >= 500 or resp.status_code in (408, 429):
                raise _Retryable(message)
            raise CommandExecutionError(f"k8s_artifact: GET {url}: {message}; not retried")
        length = resp.headers.get("Content-Length", "")
        expected = int(length) if length.isdigit() else None
        if limit is not None and expected is not None and expected > limit:
            raise CommandExecutionError(f"k8s_artifact: GET {url}: {expected} bytes is more than the {limit} "
                                        "allowed here")
        size = 0
        chunks = resp.raw.stream(_CHUNK, decode_content=False)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                raise _Retryable(f"body interrupted after {size} bytes: {type(exc).__name__}: {exc}") from None
            hasher.update(chunk)
            fh.write(chunk)
            size += len(chunk)
            if limit is not None and size > limit:
                raise CommandExecutionError(f"k8s_artifact: GET {url}: more than the {limit} bytes allowed here")
        if expected is not None and size != expected:
            raise _Retryable(f"truncated body: {size} of {expected} bytes")
        return size, resp.url


def _download_into(url, fh, hash_type, net, limit=None):
    """Stream ``url`` into ``fh`` with retries; return (hex digest, size, seconds)."""
    attempts = net.retries + 1
    last = None
    with _session(net) as session:
        for attempt in range(attempts):
            if attempt:
                delay = min(net.backoff * 2 ** (attempt - 1), _BACKOFF_MAX)
                log.warning("k8s_artifact: GET %s: %s; retry %d of %d in %.1fs", url, last, attempt, net.retries,
                            delay)
                time.sleep(delay)
            fh.seek(0)
            fh.truncate()
            hasher = hashlib.new(hash_type)
            start = time.monotonic()
            try:
                size, final = _stream_once(session, url, fh, hasher, net, limit)
            except _Retryable as exc:
                last = exc
                continue
            if final != url:
                log.debug("k8s_artifact: %s redirected to %s", url, final)
            return hasher.hexdigest(), size, time.monotonic() - start
    raise CommandExecutionError(f"k8s_artifact: GET {url} failed after {attempts} attempt(s): {last}")


def _check(url, hash_type, expected, actual, size, target):
    if actual != expected:
        raise CommandExecutionError(
            f"k8s_artifact: {hash_type} mismatch for {url}: expected {expected}, got {actual} ({size} bytes). "
            f"The download was discarded; {target} was not changed.")


def _log_download(url, hash_type, size, seconds, target):
    rate = size / 1e6 / seconds if seconds > 0 else float("inf")
    log.info("k8s_artifact: downloaded %s -> %s: %.1f MB in %.2fs (%.1f MB/s), %s verified", url, target,
             size / 1e6, seconds, rate, hash_type)


# --------------------------------------------------------------------------------------------------------------------
# Atomic files and the cache
# --------------------------------------------------------------------------------------------------------------------
def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic(path, mode, uid=-1, gid=-1):
    """Yield a temporary file next to ``path``; on a clean exit it replaces ``path``, on any error it is removed."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "w+b") as fh:
            yield fh
            fh.flush()
            if uid != -1 or gid != -1:
                os.fchown(fh.fileno(), uid, gid)
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _copy_hashing(src, fh, hash_type):
    hasher = hashlib.new(hash_type)
    size = 0
    with open(src, "rb") as source:
        while chunk := source.read(_CHUNK):
            hasher.update(chunk)
            fh.write(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size


def _cache_entry(cache_dir, hash_type, digest):
    return os.path.join(cache_dir, hash_type, digest)


def _cache_fill(cache_dir, url, hash_type, digest, net):
    """Make sure the cache has an entry for ``digest`` (downloading it if absent); return its path."""
    entry = _cache_entry(cache_dir, hash_type, digest)
    if os.path.isfile(entry):
        return entry
    os.makedirs(os.path.dirname(entry), mode=0o700, exist_ok=True)
    with _atomic(entry, 0o644) as fh:
        actual, size, seconds = _download_into(url, fh, hash_type, net)
        _check(url, hash_type, digest, actual, size, "the cache")
    _log_download(url, hash_type, size, seconds, entry)
    return entry


def _open_verified(url, hash_type, digest, cache_dir, net, stack):
    """Return an open, verified file object with the artifact's bytes (from the cache, or a temporary download)."""
    if cache_dir:
        for attempt in (1, 2):
            entry = _cache_fill(cache_dir, url, hash_type, digest, net)
            fh = stack.enter_context(open(entry, "rb"))
            hasher = hashlib.new(hash_type)
            while chunk := fh.read(_CHUNK):
                hasher.update(chunk)
            if hasher.hexdigest() == digest:
                fh.seek(0)
                log.debug("k8s_artifact: using verified cache entry %s", entry)
                return fh
            fh.close()
            log.warning("k8s_artifact: cache entry %s is corrupted (%s %s); discarding it", entry, hash_type,
                        hasher.hexdigest())
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry)
        raise CommandExecutionError(f"k8s_artifact: cache entry {entry} was corrupted twice in a row")
    fh = stack.enter_context(tempfile.TemporaryFile(prefix="k8s_artifact-"))
    actual, size, seconds = _download_into(url, fh, hash_type, net)
    _check(url, hash_type, digest, actual, size, "nothing")
    _log_download(url, hash_type, size, seconds, "a temporary file")
    fh.seek(0)
    return fh


def _place(path, url, hash_type, digest, cache_dir, net, mode, uid, gid):
    """Install the verified artifact at ``path`` atomically; return where it came from (downloaded or cache)."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if not cache_dir:
        with _atomic(path, mode, uid, gid) as fh:
            actual, size, seconds = _download_into(url, fh, hash_type, net)
            _check(url, hash_type, digest, actual, size, path)
        _log_download(url, hash_type, size, seconds, path)
        return "downloaded"
    entry = _cache_entry(cache_dir, hash_type, digest)
    for _ in range(2):
        source = "cache" if os.path.isfile(entry) else "downloaded"
        _cache_fill(cache_dir, url, hash_type, digest, net)
        try:
            with _atomic(path, mode, uid, gid) as fh:
                # The cache entry is re-hashed while it is copied: a corrupted entry never reaches path.
                actual, size = _copy_hashing(entry, fh, hash_type)
                if actual != digest:
                    raise _Corrupt(actual)
        except _Corrupt as exc:
            log.warning("k8s_artifact: cache entry %s is corrupted (%s %s); discarding it and downloading again",
                        entry, hash_type, exc)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry)
            continue
        if source == "cache":
            log.info("k8s_artifact: %s -> %s from the cache: %.1f MB, %s verified", url, path, size / 1e6,
                     hash_type)
        return source
    raise CommandExecutionError(f"k8s_artifact: cache entry {entry} was corrupted again right after download; "
                                f"check the disk under {cache_dir}")


def _fetch_text(url, net):
    """GET a small text file (a checksum file), with the usual timeouts and retries."""
    buffer = io.BytesIO()
    _download_into(url, buffer, "sha256", net, limit=_CHECKSUM_FILE_LIMIT)
    return buffer.getvalue().decode("utf-8", "replace")


def _checksum_cache_path(cache_dir, checksum_url, filename, hash_type):
    key = hashlib.sha256(f"{checksum_url}\n{filename}\n{hash_type}".encode()).hexdigest()
    return os.path.join(cache_dir, "checksums", f"{key}.json")


def _digest_from_checksum_file(checksum_url, url, hash_type, cache_dir, net, network=True):
    """The digest of ``url``'s file from an opted-in checksum file; cached; None if unknown and ``network`` is off."""
    filename = _filename(url)
    cached = _checksum_cache_path(cache_dir, checksum_url, filename, hash_type) if cache_dir else None
    if cached and os.path.isfile(cached):
        with contextlib.suppress(ValueError, OSError, SaltInvocationError):
            with open(cached, encoding="utf-8") as fh:
                return _digest(json.load(fh)["digest"], hash_type)
    if not network:
        return None
    try:
        digest = parse_checksums(_fetch_text(checksum_url, net), filename, hash_type)
    except CommandExecutionError as exc:
        raise CommandExecutionError(f"{exc} ({checksum_url})") from None
    log.info("k8s_artifact: %s digest of %s taken from the opted-in checksum file %s: %s", hash_type, filename,
             checksum_url, digest)
    if cached:
        os.makedirs(os.path.dirname(cached), mode=0o700, exist_ok=True)
        with _atomic(cached, 0o644) as fh:
            fh.write(json.dumps({"checksum_url": checksum_url, "filename": filename, "hash_type": hash_type,
                                 "digest": digest}).encode())
    return digest


# --------------------------------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------------------------------
def _name_of_uid(uid):
    with contextlib.suppress(KeyError, AttributeError):
        return pwd.getpwuid(uid).pw_name
    return str(uid)


def _name_of_gid(gid):
    with contextlib.suppress(KeyError, AttributeError):
        return grp.getgrgid(gid).gr_name
    return str(gid)


def _meta_changes(path, mode, uid, gid):
    """Mode/owner differences of an existing file."""
    info = os.lstat(path)
    changes = {}
    if stat.S_IMODE(info.st_mode) != mode:
        changes["mode"] = {"old": f"{stat.S_IMODE(info.st_mode):04o}", "new": f"{mode:04o}"}
    if uid != -1 and info.st_uid != uid:
        changes["user"] = {"old": _name_of_uid(info.st_uid), "new": _name_of_uid(uid)}
    if gid != -1 and info.st_gid != gid:
        changes["group"] = {"old": _name_of_gid(info.st_gid), "new": _name_of_gid(gid)}
    return changes


def _fix_meta(path, mode, uid, gid):
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid)
    os.chmod(path, mode)


def _tag(hash_type, digest):
    return f"{hash_type}:{digest}" if digest else None


# --------------------------------------------------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------------------------------------------------
def _wanted_digest(url, digest, checksum_url, hash_type, cache_dir, net, test):
    """The pinned digest, else the opted-in checksum file's (None in test mode when that is not cached yet)."""
    if digest is not None:
        return digest
    if not checksum_url:
        raise _no_digest_error(url)
    return _digest_from_checksum_file(checksum_url, url, hash_type, cache_dir, net, network=not test)


def install(name, url, digest=None, hash_type="sha256", checksum_url=None, mode="0755", user="root", group="root",
            cache_dir=DEFAULT_CACHE_DIR, connect_timeout=10, read_timeout=30, retries=3, backoff=1.0,
            max_redirects=5, test=False):
    """
    Install the file at ``url`` as ``name`` after verifying its ``hash_type`` digest, atomically. Nothing is
    downloaded when ``name`` already has that digest; mode and owner are corrected in place. Returns
    ``{"changes": {...}, "comment": "..."}``; ``changes`` holds ``digest`` (old -> new, as ``sha256:<hex>``) and
    ``mode``/``user``/``group`` when they change. With ``test=True`` nothing is written and nothing is fetched: the
    changes that would be made are returned.

    ``digest`` is required unless ``checksum_url`` names an opted-in checksum file. ``cache_dir`` (empty: no cache)
    keeps verified downloads by digest. ``user``/``group`` None leave the owner alone.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.install /usr/local/bin/kubectl \\
            https://dl.k8s.io/release/v1.34.10/bin/linux/amd64/kubectl \\
            digest=95bd70842bd11a524d24acd5b68726899e3488e153e45e2b4ae846545beda050
    """
    path = _abspath(name)
    url = _url(url)
    hash_type = _hash_type(hash_type)
    digest = _digest(digest, hash_type)
    checksum_url = None if checksum_url in _NO_DIGEST else _url(checksum_url, "checksum_url")
    mode, uid, gid = _mode(mode), _uid(user), _gid(group)
    net = _Net(connect_timeout, read_timeout, retries, backoff, max_redirects)
    cache_dir = _abspath(cache_dir, "cache_dir") if cache_dir else None

    current = file_digest(path, hash_type)
    digest = _wanted_digest(url, digest, checksum_url, hash_type, cache_dir, net, test)
    if digest is None:
        return {"changes": {"digest": {"old": _tag(hash_type, current), "new": f"{hash_type} from {checksum_url}"}},
                "comment": f"{path} would be checked against the digest in {checksum_url} (not fetched in test "
                           f"mode) and replaced from {url} if it differs"}
    if current == digest:
        changes = _meta_changes(path, mode, uid, gid)
        if not changes:
            return {"changes": {}, "comment": f"{path} is up to date ({hash_type} {digest})"}
        if not test:
            _fix_meta(path, mode, uid, gid)
        verb = "would be updated" if test else "updated"
        return {"changes": changes, "comment": f"{path} has the right content; {', '.join(changes)} {verb}"}
    changes = {"digest": {"old": _tag(hash_type, current), "new": _tag(hash_type, digest)}}
    if test:
        return {"changes": changes, "comment": f"{path} would be installed from {url} ({hash_type} {digest})"}
    source = _place(path, url, hash_type, digest, cache_dir, net, mode, uid, gid)
    return {"changes": changes, "comment": f"{path} installed from {'the cache' if source == 'cache' else url} "
                                           f"({hash_type} {digest} verified)"}


def fetch(url, digest=None, hash_type="sha256", checksum_url=None, cache_dir=DEFAULT_CACHE_DIR, connect_timeout=10,
          read_timeout=30, retries=3, backoff=1.0, max_redirects=5):
    """
    Download ``url`` into the cache (verified; nothing is fetched when a valid entry exists) and return the path of
    the cache entry. Useful to pre-seed a node's cache.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.fetch https://dl.k8s.io/release/v1.34.10/bin/linux/amd64/kubectl \\
            digest=95bd70842bd11a524d24acd5b68726899e3488e153e45e2b4ae846545beda050
    """
    url = _url(url)
    hash_type = _hash_type(hash_type)
    digest = _digest(digest, hash_type)
    if not cache_dir:
        raise SaltInvocationError("k8s_artifact.fetch: cache_dir is required")
    cache_dir = _abspath(cache_dir, "cache_dir")
    net = _Net(connect_timeout, read_timeout, retries, backoff, max_redirects)
    if digest is None:
        if checksum_url in _NO_DIGEST:
            raise _no_digest_error(url)
        digest = _digest_from_checksum_file(_url(checksum_url, "checksum_url"), url, hash_type, cache_dir, net)
    with contextlib.ExitStack() as stack:
        _open_verified(url, hash_type, digest, cache_dir, net, stack)
    return _cache_entry(cache_dir, hash_type, digest)


# --------------------------------------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------------------------------------
def _norm(name):
    return posixpath.normpath(str(name))


def _escapes(path):
    norm = posixpath.normpath(path)
    return norm == ".." or norm.startswith("../") or norm.startswith("/")


def _members(members):
    """Validate ``members`` ({file name: member path}) and normalise the member paths."""
    if not isinstance(members, dict) or not members:
        raise SaltInvocationError(f"k8s_artifact: members '{members}' must be a non-empty mapping of file name -> "
                                  "archive member path, e.g. {etcd: etcd-v3.6.14-linux-amd64/etcd}")
    result = {}
    for dest, member in members.items():
        dest, member = str(dest), str(member)
        if not dest or "/" in dest or "\0" in dest or dest in (".", ".."):
            raise SaltInvocationError(f"k8s_artifact: members: '{dest}' must be a plain file name (no '/')")
        if not member or member.startswith("/") or ".." in member.split("/"):
            raise SaltInvocationError(f"k8s_artifact: members:{dest}: '{member}' must be a relative member path "
                                      "without '..'")
        result[dest] = _norm(member)
    return result


def _unsafe(url, name, why):
    return CommandExecutionError(f"k8s_artifact: refusing archive {url}: member '{name}' {why}. Nothing was "
                                 "extracted.")


def _check_member(info, url):
    """Refuse members that could write outside the destination or create special files; return the normal path."""
    name = info.name
    if name.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", name):
        raise _unsafe(url, name, "has an absolute path")
    if ".." in re.split(r"[\\/]", name):
        raise _unsafe(url, name, "has a '..' path component")
    norm = _norm(name)
    if info.issym():
        if info.linkname.startswith("/") or _escapes(posixpath.join(posixpath.dirname(norm), info.linkname)):
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
            raise CommandExecutionError(f"k8s_artifact: {url}: member '{info.name}' links to '{info.linkname}', "
                                        "which is not in the archive")
        info = index[target]
    raise CommandExecutionError(f"k8s_artifact: {url}: member '{info.name}': too many links (a loop?)")


def _select(tf, members, url):
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
            raise CommandExecutionError(f"k8s_artifact: {url} has no member '{member}' (for {dest}); its files "
                                        f"include: {names}")
        selected[dest] = _follow(index[member], index, url)
    return selected


def _member_chunks(tf, info):
    source = tf.extractfile(info)
    with source:
        while chunk := source.read(_CHUNK):
            yield chunk


def _hash_selected(tf, selected):
    digests = {}
    for dest, info in sorted(selected.items(), key=lambda item: item[1].offset_data):
        hasher = hashlib.sha256()
        for chunk in _member_chunks(tf, info):
            hasher.update(chunk)
        digests[dest] = hasher.hexdigest()
    return digests


def _extract_selected(tf, selected, paths, current, mode, uid, gid):
    """Write each selected member to a temporary file next to its destination, then rename those that differ."""
    temps, digests, changes = {}, {}, {}
    try:
        for dest, info in sorted(selected.items(), key=lambda item: item[1].offset_data):
            fd, temps[dest] = tempfile.mkstemp(dir=os.path.dirname(paths[dest]), prefix=f".{dest}.",
                                               suffix=_TMP_SUFFIX)
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
                meta = _meta_changes(path, mode, uid, gid)
                if meta:
                    _fix_meta(path, mode, uid, gid)
                    changes[path] = meta
            else:
                os.replace(temps.pop(dest), path)
                changes[path] = {"digest": {"old": _tag("sha256", current[dest]),
                                            "new": _tag("sha256", digests[dest])}}
    finally:
        for tmp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    for directory in {os.path.dirname(p) for p in paths.values()}:
        _fsync_dir(directory)
    return digests, changes


def _manifest_path(cache_dir, hash_type, digest):
    return os.path.join(cache_dir, "manifests", hash_type, f"{digest}.json")


def _manifest_load(cache_dir, hash_type, digest):
    """Member digests recorded when the archive was last extracted ({member path: sha256})."""
    if not cache_dir:
        return {}
    try:
        with open(_manifest_path(cache_dir, hash_type, digest), encoding="utf-8") as fh:
            data = json.load(fh).get("members") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)}


def _manifest_save(cache_dir, hash_type, digest, member_digests):
    if not cache_dir:
        return
    data = _manifest_load(cache_dir, hash_type, digest)
    data.update(member_digests)
    path = _manifest_path(cache_dir, hash_type, digest)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with _atomic(path, 0o644) as fh:
        fh.write(json.dumps({"archive": _tag(hash_type, digest), "members": data}, indent=1,
                            sort_keys=True).encode())


def _archive_changes(paths, current, expected, mode, uid, gid):
    changes = {}
    for dest, path in paths.items():
        if current[dest] != expected[dest]:
            changes[path] = {"digest": {"old": _tag("sha256", current[dest]), "new": _tag("sha256", expected[dest])}}
        elif _meta_changes(path, mode, uid, gid):
            changes[path] = _meta_changes(path, mode, uid, gid)
    return changes


def _cached_readonly(cache_dir, hash_type, digest, stack):
    """The cache entry as a verified open file, or None; never downloads, deletes or writes (test mode)."""
    entry = _cache_entry(cache_dir, hash_type, digest) if cache_dir else None
    if not entry or not os.path.isfile(entry):
        return None
    fh = stack.enter_context(open(entry, "rb"))
    hasher = hashlib.new(hash_type)
    while chunk := fh.read(_CHUNK):
        hasher.update(chunk)
    if hasher.hexdigest() != digest:
        return None
    fh.seek(0)
    return fh


def extract(name, url, members, digest=None, hash_type="sha256", checksum_url=None, mode="0755", user="root",
            group="root", cache_dir=DEFAULT_CACHE_DIR, connect_timeout=10, read_timeout=30, retries=3, backoff=1.0,
            max_redirects=5, test=False):
    """
    Extract selected members of the tar archive (.tar.gz, .tgz, .tar.xz, .tar) at ``url`` into the directory
    ``name``, after verifying the archive's digest. ``members`` maps each file name to write in ``name`` to its
    member path in the archive. Each file is written atomically and only when its content differs; an archive with
    an unsafe member (absolute path, ``..``, escaping link, device file) is refused as a whole. Returns
    ``{"changes": {<path>: {"digest": {old, new}} or mode/user/group changes}, "comment": ...}``.

    With a ``cache_dir`` the member digests are recorded, so a re-apply compares the files without any request.
    With ``test=True`` nothing is written and nothing is fetched.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.extract /usr/local/bin \\
            https://github.com/etcd-io/etcd/releases/download/v3.6.14/etcd-v3.6.14-linux-amd64.tar.gz \\
            members='{etcd: etcd-v3.6.14-linux-amd64/etcd, etcdctl: etcd-v3.6.14-linux-amd64/etcdctl}' \\
            digest=ffe840ff9295808e88cce2794a18a5ac87f12a5203c8314d0bf6aa119b41bac5
    """
    dest_dir = _abspath(name)
    url = _url(url)
    members = _members(members)
    hash_type = _hash_type(hash_type)
    digest = _digest(digest, hash_type)
    checksum_url = None if checksum_url in _NO_DIGEST else _url(checksum_url, "checksum_url")
    mode, uid, gid = _mode(mode), _uid(user), _gid(group)
    net = _Net(connect_timeout, read_timeout, retries, backoff, max_redirects)
    cache_dir = _abspath(cache_dir, "cache_dir") if cache_dir else None
    if os.path.exists(dest_dir) and not os.path.isdir(dest_dir):
        raise CommandExecutionError(f"k8s_artifact: {dest_dir} exists and is not a directory")

    paths = {dest: os.path.join(dest_dir, dest) for dest in members}
    current = {dest: file_digest(path, "sha256") for dest, path in paths.items()}
    digest = _wanted_digest(url, digest, checksum_url, hash_type, cache_dir, net, test)
    if digest is None:
        return {"changes": {p: {"digest": {"old": _tag("sha256", current[d]), "new": f"from {url}"}}
                            for d, p in paths.items()},
                "comment": f"{url} would be checked against the digest in {checksum_url} (not fetched in test "
                           f"mode) and {', '.join(members)} extracted into {dest_dir} where they differ"}

    manifest = _manifest_load(cache_dir, hash_type, digest)
    expected = {dest: manifest.get(member) for dest, member in members.items()}
    if test and not all(expected.values()):
        with contextlib.ExitStack() as stack:
            fh = _cached_readonly(cache_dir, hash_type, digest, stack)
            if fh is not None:
                with tarfile.open(fileobj=fh, mode="r:*") as tf:
                    expected = _hash_selected(tf, _select(tf, members, url))
    if all(expected.values()):
        changes = _archive_changes(paths, current, expected, mode, uid, gid)
        stale = [dest for dest in members if current[dest] != expected[dest]]
        if not changes:
            return {"changes": {}, "comment": f"{', '.join(members)} in {dest_dir} are up to date "
                                              f"({hash_type} {digest} archive)"}
        if test:
            return {"changes": changes, "comment": f"{len(changes)} file(s) in {dest_dir} would be updated from "
                                                   f"{url}"}
        if not stale:
            for path in changes:
                _fix_meta(path, mode, uid, gid)
            return {"changes": changes, "comment": f"mode/owner of {len(changes)} file(s) in {dest_dir} updated"}
    elif test:
        return {"changes": {p: {"digest": {"old": _tag("sha256", current[d]), "new": f"from {url}"}}
                            for d, p in paths.items()},
                "comment": f"{url} would be downloaded ({hash_type} {digest}) and {', '.join(members)} extracted "
                           f"into {dest_dir} where they differ"}

    with contextlib.ExitStack() as stack:
        fh = _open_verified(url, hash_type, digest, cache_dir, net, stack)
        try:
            tf = stack.enter_context(tarfile.open(fileobj=fh, mode="r:*"))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise CommandExecutionError(f"k8s_artifact: {url} is not a readable tar archive: {exc}") from None
        selected = _select(tf, members, url)
        os.makedirs(dest_dir, mode=0o755, exist_ok=True)
        digests, changes = _extract_selected(tf, selected, paths, current, mode, uid, gid)
    _manifest_save(cache_dir, hash_type, digest, {members[dest]: hexdigest for dest, hexdigest in digests.items()})
    log.info("k8s_artifact: %s (%s verified): %d of %d member(s) written to %s", url, hash_type,
             sum(1 for c in changes.values() if "digest" in c), len(members), dest_dir)
    return {"changes": changes,
            "comment": f"{', '.join(members)} extracted into {dest_dir} from {url} ({hash_type} {digest} verified)"
            if changes else f"{', '.join(members)} in {dest_dir} are up to date"}


# --------------------------------------------------------------------------------------------------------------------
# Mirror
# --------------------------------------------------------------------------------------------------------------------
def _mirror_path(root, url):
    """<root>/<host>/<path> for an upstream URL (the layout mirror_url expects); never outside root."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.netloc.rpartition("@")[2]
    rel = posixpath.normpath(f"{host}/{urllib.parse.unquote(parsed.path).lstrip('/')}")
    if not host or host in (".", "..") or "/" in host or _escapes(rel) or rel == host:
        raise CommandExecutionError(f"k8s_artifact: {url} cannot be mapped to a file inside the mirror")
    return os.path.join(root, *rel.split("/"))


def _mirror_one(root, component, config, arch, net):
    info = _resolve(component, config, arch=arch, mirror=None)
    url, hash_type, digest = info["upstream_url"], info["hash_type"], info["digest"]
    checksum_text = checksum_path = None
    if digest is None:
        checksum_path = _mirror_path(root, info["upstream_checksum_url"])
        if os.path.isfile(checksum_path):
            with open(checksum_path, encoding="utf-8", errors="replace") as fh:
                checksum_text = fh.read()
        else:
            checksum_text = _fetch_text(info["upstream_checksum_url"], net)
        try:
            digest = parse_checksums(checksum_text, _filename(url), hash_type)
        except CommandExecutionError as exc:
            raise CommandExecutionError(f"{exc} ({info['upstream_checksum_url']})") from None
    path = _mirror_path(root, url)
    result = {"component": component, "version": info["version"], "arch": arch, "url": url, "path": path,
              "hash_type": hash_type, "digest": digest, "status": "present"}
    if file_digest(path, hash_type) != digest:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with _atomic(path, 0o644) as fh:
            actual, size, seconds = _download_into(url, fh, hash_type, net)
            _check(url, hash_type, digest, actual, size, path)
        _log_download(url, hash_type, size, seconds, path)
        result["status"] = "downloaded"
    if checksum_path and not os.path.isfile(checksum_path):
        os.makedirs(os.path.dirname(checksum_path), mode=0o755, exist_ok=True)
        with _atomic(checksum_path, 0o644) as fh:
            fh.write(checksum_text.encode())
    return result


def mirror_populate(directory, config=None, components=None, arches=None, connect_timeout=None, read_timeout=None,
                    retries=None, backoff=1.0, max_redirects=5):
    """
    Download every artifact the cluster needs (or ``components``) from upstream into ``directory``, laid out as
    ``<directory>/<upstream host>/<upstream path>`` -- the layout ``k8s:artifacts:mirror`` expects. Every file is
    verified against its pinned digest (or its opted-in checksum file, which is mirrored too); a mismatch is refused
    and not written. Files already present with the right digest are not downloaded again. The other artifacts are
    still mirrored when one fails; the error lists every failure.

    ``config`` defaults to this minion's settings (``k8s.config``), ``components`` to ``k8s.needed_components``, and
    ``arches`` to ``k8s:arch``. Serve the directory with any static web server, e.g.
    ``python3 -m http.server 8080 --directory <directory>``, and set ``k8s:artifacts:mirror`` to its URL.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.mirror_populate /srv/kubesalt-mirror
        salt-call k8s_artifact.mirror_populate /srv/kubesalt-mirror components='[etcd]' arches='[amd64, arm64]'
    """
    if config is None:
        config = __salt__["k8s.config"]()
    if components is None:
        if "k8s.needed_components" not in __salt__:
            raise SaltInvocationError("k8s_artifact.mirror_populate: the k8s module is not loaded; give "
                                      "components=[...]")
        components = __salt__["k8s.needed_components"](config)
    if isinstance(components, str):
        components = [c.strip() for c in components.split(",") if c.strip()]
    arches = arches or [config.get("arch")]
    if isinstance(arches, str):
        arches = [a.strip() for a in arches.split(",") if a.strip()]
    settings = config.get("artifacts") or {}
    net = _Net(settings.get("connect_timeout", 10) if connect_timeout is None else connect_timeout,
               settings.get("read_timeout", 30) if read_timeout is None else read_timeout,
               settings.get("retries", 3) if retries is None else retries, backoff, max_redirects)
    root = _abspath(directory, "directory")
    results, errors = [], []
    for component in dict.fromkeys(components):
        for arch in dict.fromkeys(arches):
            try:
                results.append(_mirror_one(root, component, config, arch, net))
            except (CommandExecutionError, SaltInvocationError) as exc:
                errors.append(f"{component} ({arch}): {exc}")
    if errors:
        raise CommandExecutionError(f"k8s_artifact.mirror_populate: {len(errors)} artifact(s) failed or were "
                                    f"refused; {len(results)} other(s) are in {root}:\n  - " + "\n  - ".join(errors))
    log.info("k8s_artifact: mirror %s: %d artifact(s), %d downloaded", root, len(results),
             sum(1 for r in results if r["status"] == "downloaded"))
    return {"directory": root, "artifacts": results}
