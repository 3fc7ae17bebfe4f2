"""
Downloads for kubesalt's artifacts: HTTP(S) with bounded retries, hashing while the bytes stream, checksum files,
mirror URLs. Callers decide where the bytes go (``kubesalt.cache`` keeps them by digest).

* **Bounded network behaviour.** Connect and read timeouts (the read timeout bounds every stall, including one
  mid-body); ``retries`` extra attempts on connection errors, timeouts, truncated bodies, HTTP 5xx, 408 and 429,
  with exponential backoff (``backoff * 2**n`` seconds, each wait capped at 30 s); HTTP 4xx fails at once; at most
  ``max_redirects`` redirects. A failed attempt restarts from byte 0 (no ranged resume). Proxies come from the
  environment (``https_proxy``, ``no_proxy``), and so does the CA bundle (``REQUESTS_CA_BUNDLE``).
* **Bytes as published.** Requests are sent with ``Accept-Encoding: identity`` and the body is hashed as received,
  without content decoding: the digest is that of the published file.
"""

import hashlib
import io
import logging
import posixpath
import re
import time
import urllib.parse

import requests  # a dependency of Salt itself, like urllib3 under it
import urllib3
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import data, files

log = logging.getLogger(__name__)

HASH_TYPES = data.HASH_SIZES
# What a digest argument that says "none" looks like (Jinja renders a missing digest as 'None').
NO_DIGEST = (None, "", "None", "none", "null", "Null", "NULL", "~")
_BACKOFF_MAX = 30.0
CHECKSUM_FILE_LIMIT = 1024 * 1024
# The most a download may be, unless the caller says otherwise (k8s:artifacts:max_size_mib): a hostile or broken
# mirror cannot fill the disk.
DEFAULT_MAX_BYTES = 512 * 1024 * 1024


class _Retryable(Exception):
    """A transient download failure: worth another attempt."""


class Net:
    """Network settings of one operation (validated)."""

    def __init__(
        self, connect_timeout=10, read_timeout=30, retries=3, backoff=1.0, max_redirects=5, max_bytes=DEFAULT_MAX_BYTES
    ):
        self.max_bytes = _count("max_bytes", max_bytes, 1 << 40)
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
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit() or int(value) > maximum:
        raise SaltInvocationError(f"k8s_artifact: {key}: '{value}' must be an integer from 0 to {maximum}")
    return int(value)


def check_hash_type(value):
    hash_type = str(value or "").lower()
    if hash_type not in HASH_TYPES:
        raise SaltInvocationError(f"k8s_artifact: hash_type '{value}' is not supported; use sha256 or sha512")
    return hash_type


def check_digest(value, hash_type, what="digest"):
    """Normalise a digest argument; None when none is given (Jinja renders a missing one as 'None')."""
    if value in NO_DIGEST:
        return None
    text = str(value).strip().lower()
    if text.startswith((f"{hash_type}:", f"{hash_type}=")):
        text = text[len(hash_type) + 1 :]
    if not re.fullmatch(rf"[0-9a-f]{{{HASH_TYPES[hash_type]}}}", text):
        raise SaltInvocationError(
            f"k8s_artifact: {what} '{value}' is not a {hash_type} digest ({HASH_TYPES[hash_type]} hex characters)"
        )
    return text


def check_url(value, key="url"):
    text = str(value or "")
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SaltInvocationError(f"k8s_artifact: {key} '{value}' is not an http(s) URL")
    return text


def parse_checksums(text, filename=None, hash_type="sha256"):
    """The ``hash_type`` digest for ``filename`` in checksum file ``text``; the formats understood are listed in
    ``k8s_artifact.parse_checksums``."""
    hash_type = check_hash_type(hash_type)
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
        raise CommandExecutionError(f"k8s_artifact: no {hash_type} digest ({size} hex characters) in the checksum file")
    if filename is None or (len(entries) == 1 and entries[0][1] is None):
        found = {digest for digest, _ in entries}
        if len(found) == 1:
            return found.pop()
        raise CommandExecutionError("k8s_artifact: the checksum file lists several files; name the one to use")
    wanted = posixpath.basename(str(filename))
    found = {
        digest
        for digest, name in entries
        if name is not None and posixpath.basename(name.strip().lstrip("*")) == wanted
    }
    if len(found) == 1:
        return found.pop()
    if not found:
        names = ", ".join(sorted({str(n) for _, n in entries}))[:300]
        raise CommandExecutionError(
            f"k8s_artifact: the checksum file has no {hash_type} entry for '{wanted}' (it lists: {names})"
        )
    raise CommandExecutionError(f"k8s_artifact: the checksum file lists different digests for '{wanted}'")


def mirror_url(url, mirror):
    """``url`` rewritten onto the ``mirror`` base URL (the layout is described at ``k8s_artifact.mirror_url``)."""
    if not mirror:
        return url
    base = check_url(mirror, "mirror").rstrip("/")
    parsed = urllib.parse.urlsplit(check_url(url))
    host = parsed.netloc.rpartition("@")[2]
    rewritten = f"{base}/{host}{parsed.path or '/'}"
    return f"{rewritten}?{parsed.query}" if parsed.query else rewritten


def url_filename(url):
    return posixpath.basename(urllib.parse.urlsplit(url).path) or url


def checksum_hash_type(url):
    return "sha512" if "sha512" in url_filename(url).lower() else "sha256"


def _session(net):
    session = requests.Session()
    session.max_redirects = net.max_redirects
    session.headers.update(
        {"User-Agent": f"kubesalt-k8s_artifact requests/{requests.__version__}", "Accept-Encoding": "identity"}
    )
    return session


def _stream_once(session, url, fh, hasher, net, limit=None):
    """One GET of ``url`` into ``fh``; return (size, final URL). Transient failures raise _Retryable."""
    try:
        resp = session.get(url, stream=True, timeout=(net.connect_timeout, net.read_timeout))
    except requests.TooManyRedirects:
        raise CommandExecutionError(
            f"k8s_artifact: GET {url}: more than {net.max_redirects} redirects "
            "(k8s_artifact max_redirects); not retried"
        ) from None
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
            raise CommandExecutionError(
                f"k8s_artifact: GET {url}: {expected} bytes is more than the {limit} allowed here"
            )
        size = 0
        chunks = resp.raw.stream(files.CHUNK, decode_content=False)
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


def download_into(url, fh, hash_type, net, limit=None):
    """Stream ``url`` into ``fh`` with retries, at most ``limit`` bytes (default ``net.max_bytes``); return (hex
    digest, size, seconds)."""
    limit = net.max_bytes if limit is None else limit
    attempts = net.retries + 1
    last = None
    with _session(net) as session:
        for attempt in range(attempts):
            if attempt:
                delay = min(net.backoff * 2 ** (attempt - 1), _BACKOFF_MAX)
                log.warning("k8s_artifact: GET %s: %s; retry %d of %d in %.1fs", url, last, attempt, net.retries, delay)
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


def check(url, hash_type, expected, actual, size, target):
    if actual != expected:
        raise CommandExecutionError(
            f"k8s_artifact: {hash_type} mismatch for {url}: expected {expected}, got {actual} ({size} bytes). "
            f"The download was discarded; {target} was not changed."
        )


def log_download(url, hash_type, size, seconds, target):
    rate = size / 1e6 / seconds if seconds > 0 else float("inf")
    log.info(
        "k8s_artifact: downloaded %s -> %s: %.1f MB in %.2fs (%.1f MB/s), %s verified",
        url,
        target,
        size / 1e6,
        seconds,
        rate,
        hash_type,
    )


def fetch_text(url, net):
    """GET a small text file (a checksum file), with the usual timeouts and retries."""
    buffer = io.BytesIO()
    download_into(url, buffer, "sha256", net, limit=CHECKSUM_FILE_LIMIT)
    return buffer.getvalue().decode("utf-8", "replace")
