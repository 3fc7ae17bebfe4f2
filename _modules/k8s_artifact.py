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
* **Bounded size.** A download larger than ``max_bytes`` (``k8s:artifacts:max_size_mib``, default 512 MiB) is
  refused while it streams, whatever its Content-Length says: a hostile mirror cannot fill the disk.
* **A cache that is ours.** ``cache_dir`` must be a directory of this user that group and others cannot write;
  kubesalt creates it 0700.
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

Download options
----------------
:py:func:`install`, :py:func:`extract`, :py:func:`fetch` and the ``k8s_artifact`` states take the same keyword
arguments for where an artifact comes from and how it is fetched (defaults in ``DOWNLOAD_OPTIONS``); any other
keyword is refused, naming it:

``hash_type``
    ``sha256`` (default) or ``sha512``: the type of ``digest``.
``checksum_url``
    an opted-in official checksum file to take the digest from when none is pinned.
``cache_dir``
    verified downloads are kept here by digest (default ``/var/cache/kubesalt/artifacts``); empty: no cache.
``connect_timeout``, ``read_timeout``
    seconds (defaults 10 and 30).
``retries``, ``backoff``
    extra attempts (default 3) and the first wait between them in seconds (default 1.0).
``max_redirects``, ``max_bytes``
    at most this many redirects (default 5) and bytes (default 512 MiB).

Mirrors (air-gapped sites)
--------------------------
``k8s:artifacts:mirror`` (a base URL) rewrites every artifact URL: the scheme and host are replaced and the upstream
host becomes the first path segment (an opted-in checksum file is always fetched from upstream: a mirror that served
both a file and its checksum could vouch for anything)::

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
import logging
import os
import posixpath
import tarfile
import urllib.parse

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import archive, cache, download, files

log = logging.getLogger(__name__)

__virtualname__ = "k8s_artifact"

PINS_KEY = "k8s:artifacts:pins"


def __virtual__():
    return __virtualname__


def _abspath(value, key="name"):
    text = str(value or "")
    if not os.path.isabs(text):
        raise SaltInvocationError(f"k8s_artifact: {key} '{value}' must be an absolute path")
    return os.path.normpath(text)


def _no_digest_error(url):
    return CommandExecutionError(
        f"k8s_artifact: no sha256/sha512 digest for {url}: downloads are never installed unverified. Pin one in "
        f"{PINS_KEY}:<component>:<version>:<arch> (e.g. {{sha256: <hex>}}), or opt in to the official checksum "
        "file with k8s:artifacts:checksum_urls:<component>"
    )


def file_digest(path, hash_type="sha256"):
    """
    Return the hex digest of the regular file at ``path``, or None when there is no regular file there (missing, or
    a symlink, which is replaced by a regular file when installed).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.file_digest /usr/local/bin/kubelet
        salt-call k8s_artifact.file_digest /usr/local/bin/kubelet sha512
    """
    return files.digest(path, download.check_hash_type(hash_type))


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
    return download.parse_checksums(text, filename, hash_type)


def mirror_url(url, mirror):
    """
    Rewrite ``url`` onto the ``mirror`` base URL: scheme and host are replaced, the upstream host becomes the first
    path segment. An empty ``mirror`` returns ``url`` unchanged.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.mirror_url https://dl.k8s.io/release/v1.34.10/bin/linux/amd64/kubelet http://mirror:8080
    """
    return download.mirror_url(url, mirror)


def _format(template, key, **values):
    try:
        return str(template).format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise CommandExecutionError(
            f"k8s_artifact: {key}: '{template}' has an unknown placeholder ({exc}); use {{version}} and {{arch}}"
        ) from None


def _resolve(component, config, arch=None, mirror=None):
    if not isinstance(config, dict):
        raise SaltInvocationError(
            "k8s_artifact.resolve: config must be the kubesalt settings mapping (k8s.settings / map.jinja)"
        )
    entry = (config.get("catalogue") or {}).get(component)
    if not isinstance(entry, dict):
        raise CommandExecutionError(
            f"k8s_artifact: component '{component}' is not in the catalogue; pin its url "
            f"and digest in {PINS_KEY}:{component}"
        )
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
    upstream = download.check_url(_format(template, f"{key}:url", version=version, arch=arch), f"{key}:url")
    hash_type = digest = checksum_url = upstream_checksum = None
    for candidate in download.HASH_TYPES:
        if pinned.get(candidate) not in download.NO_DIGEST:
            hash_type = candidate
            try:
                digest = download.check_digest(pinned[candidate], candidate)
            except SaltInvocationError:
                raise CommandExecutionError(
                    f"k8s_artifact: {key}:{candidate}: '{pinned[candidate]}' is not a "
                    f"{candidate} digest ({download.HASH_TYPES[candidate]} hex characters)"
                ) from None
            break
    if digest is None:
        opt_in = ((config.get("artifacts") or {}).get("checksum_urls") or {}).get(component)
        if not opt_in:
            raise CommandExecutionError(
                f"k8s_artifact: no sha256/sha512 digest for {component} {version} ({arch}) in the catalogue or the "
                f"pillar. Pin one in {key} (e.g. {{sha256: <hex>}}), or opt in to the official checksum file with "
                f"k8s:artifacts:checksum_urls:{component}. Unverified downloads are never installed."
            )
        upstream_checksum = download.check_url(
            _format(opt_in, f"k8s:artifacts:checksum_urls:{component}", version=version, arch=arch),
            f"k8s:artifacts:checksum_urls:{component}",
        )
        # Never through the mirror: a mirror that served both the file and its checksum could vouch for anything.
        checksum_url = upstream_checksum
        hash_type = download.checksum_hash_type(upstream_checksum)
    kind, target, members = _layout(component, entry, config)
    members = {
        dest: _format(member, f"{PINS_KEY}:{component}:members:{dest}", version=version, arch=arch)
        for dest, member in members.items()
    }
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
        "target": target,
        "files": [target] if kind == "binary" else [f"{target}/{dest}" for dest in members],
    }


def _layout(component, entry, config):
    """(type, target, members) of a catalogue entry: a binary's file, or the directory an archive's members go to."""
    kind = entry.get("type", "binary")
    if kind not in ("binary", "archive"):
        raise CommandExecutionError(f"k8s_artifact: catalogue type '{kind}' of {component} is not binary or archive")
    paths = config.get("paths") or {}
    install_dir = entry.get("install_dir", "bin_dir")
    if install_dir not in paths:
        raise CommandExecutionError(
            f"k8s_artifact: catalogue install_dir '{install_dir}' of {component} is not a k8s:paths entry"
        )
    directory = str(paths[install_dir]).rstrip("/")
    members = {str(dest): str(member) for dest, member in (entry.get("members") or {}).items()}
    return kind, directory if kind == "archive" else f"{directory}/{component}", members


def installed_files(component, config):
    """
    The files catalogue ``component`` installs (its binary, or its archive's members in their directory), whatever
    its version and whether a digest is pinned: what its clean state removes.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.installed_files containerd "$(salt-call --out=json k8s.config | jq -c .local)"
    """
    entry = (config.get("catalogue") or {}).get(component)
    if not isinstance(entry, dict):
        raise CommandExecutionError(f"k8s_artifact: component '{component}' is not in the catalogue")
    kind, target, members = _layout(component, entry, config)
    return [target] if kind == "binary" else [f"{target}/{dest}" for dest in members]


def resolve(component, config):
    """
    Return how to fetch and verify catalogue ``component`` for the configured version and arch: ``component``,
    ``version``, ``arch``, ``url`` (rewritten onto ``k8s:artifacts:mirror`` when set), ``upstream_url``,
    ``hash_type``, ``digest`` (hex, or None when it comes from an opted-in checksum file), ``checksum_url`` (or None),
    ``upstream_checksum_url``, ``type`` (binary or archive), ``members`` (destination name -> member path),
    ``target`` (the binary's path, or the directory the members go to: the entry's ``install_dir``, a ``k8s:paths``
    key, default ``bin_dir``) and ``files`` (every path it installs).

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
        download.check_url(mirror, "k8s:artifacts:mirror")
    return _resolve(component, config, mirror=mirror)


# The download options of install, extract and fetch (and of the k8s_artifact states), with their defaults: each is a
# keyword argument, documented under "Download options" in the module docstring.
DOWNLOAD_OPTIONS = {
    "hash_type": "sha256",
    "checksum_url": None,
    "cache_dir": cache.DEFAULT_DIR,
    "connect_timeout": 10,
    "read_timeout": 30,
    "retries": 3,
    "backoff": 1.0,
    "max_redirects": 5,
    "max_bytes": download.DEFAULT_MAX_BYTES,
}


def _source(url, digest, options):
    """
    ``(url, hash_type, digest, checksum_url, cache_dir, net)``: where an artifact comes from and how it is verified
    and fetched, checked. ``options`` are the caller's download options (:data:`DOWNLOAD_OPTIONS`); any other
    argument is refused, naming it (Salt's own ``__pub_*`` keywords aside).
    """
    unknown = sorted(k for k in options if k not in DOWNLOAD_OPTIONS and not k.startswith("__"))
    if unknown:
        raise SaltInvocationError(
            f"k8s_artifact: unknown argument(s) {', '.join(map(repr, unknown))}; the download options are "
            f"{', '.join(DOWNLOAD_OPTIONS)}"
        )
    opts = {key: options.get(key, default) for key, default in DOWNLOAD_OPTIONS.items()}
    hash_type = download.check_hash_type(opts["hash_type"])
    checksum_url, cache_dir = opts["checksum_url"], opts["cache_dir"]
    return (
        download.check_url(url),
        hash_type,
        download.check_digest(digest, hash_type),
        None if checksum_url in download.NO_DIGEST else download.check_url(checksum_url, "checksum_url"),
        cache.check_dir(_abspath(cache_dir, "cache_dir")) if cache_dir else None,
        download.Net(
            *(opts[k] for k in ("connect_timeout", "read_timeout", "retries", "backoff", "max_redirects")),
            opts["max_bytes"],
        ),
    )


def _wanted_digest(url, digest, checksum_url, hash_type, cache_dir, net, test):
    """The pinned digest, else the opted-in checksum file's (None in test mode when that is not cached yet)."""
    if digest is not None:
        return digest
    if not checksum_url:
        raise _no_digest_error(url)
    return cache.digest_from_checksum_file(checksum_url, url, hash_type, cache_dir, net, network=not test)


def install(name, url, digest=None, mode="0755", user="root", group="root", test=False, **options):
    """
    Install the file at ``url`` as ``name`` after verifying its ``hash_type`` digest, atomically. Nothing is
    downloaded when ``name`` already has that digest; mode and owner are corrected in place. Returns
    ``{"changes": {...}, "comment": "..."}``; ``changes`` holds ``digest`` (old -> new, as ``sha256:<hex>``) and
    ``mode``/``user``/``group`` when they change. With ``test=True`` nothing is written and nothing is fetched: the
    changes that would be made are returned.

    ``digest`` is required unless ``checksum_url`` names an opted-in checksum file. ``cache_dir`` (empty: no cache)
    keeps verified downloads by digest. ``user``/``group`` None leave the owner alone. The other keyword arguments
    are the download options (module docstring).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.install /usr/local/bin/kubectl \\
            https://dl.k8s.io/release/v1.34.10/bin/linux/amd64/kubectl \\
            digest=95bd70842bd11a524d24acd5b68726899e3488e153e45e2b4ae846545beda050
    """
    path = _abspath(name)
    url, hash_type, digest, checksum_url, cache_dir, net = _source(url, digest, options)
    mode, uid, gid = files.parse_mode(mode), files.owner_id(user, "user"), files.owner_id(group, "group")

    current = cache.installed_digest(path, hash_type, cache_dir, record=not test)
    digest = _wanted_digest(url, digest, checksum_url, hash_type, cache_dir, net, test)
    if digest is None:
        return {
            "changes": {"digest": {"old": cache.tag(hash_type, current), "new": f"{hash_type} from {checksum_url}"}},
            "comment": f"{path} would be checked against the digest in {checksum_url} (not fetched in test "
            f"mode) and replaced from {url} if it differs",
        }
    if current == digest:
        changes = files.meta_changes(path, mode, uid, gid)
        if not changes:
            return {"changes": {}, "comment": f"{path} is up to date ({hash_type} {digest})"}
        if not test:
            files.fix_meta(path, mode, uid, gid)
        verb = "would be updated" if test else "updated"
        return {"changes": changes, "comment": f"{path} has the right content; {', '.join(changes)} {verb}"}
    changes = {"digest": {"old": cache.tag(hash_type, current), "new": cache.tag(hash_type, digest)}}
    if test:
        return {"changes": changes, "comment": f"{path} would be installed from {url} ({hash_type} {digest})"}
    source = cache.place(path, url, hash_type, digest, cache_dir, net, mode, uid, gid)
    return {
        "changes": changes,
        "comment": f"{path} installed from {'the cache' if source == 'cache' else url} ({hash_type} {digest} verified)",
    }


def fetch(url, digest=None, **options):
    """
    Download ``url`` into the cache (verified; nothing is fetched when a valid entry exists) and return the path of
    the cache entry. Useful to pre-seed a node's cache. The keyword arguments are the download options (module
    docstring); ``cache_dir`` must not be empty.

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.fetch https://dl.k8s.io/release/v1.34.10/bin/linux/amd64/kubectl \\
            digest=95bd70842bd11a524d24acd5b68726899e3488e153e45e2b4ae846545beda050
    """
    if not options.get("cache_dir", DOWNLOAD_OPTIONS["cache_dir"]):
        raise SaltInvocationError("k8s_artifact.fetch: cache_dir is required")
    url, hash_type, digest, checksum_url, cache_dir, net = _source(url, digest, options)
    if digest is None:
        if checksum_url is None:
            raise _no_digest_error(url)
        digest = cache.digest_from_checksum_file(checksum_url, url, hash_type, cache_dir, net)
    with contextlib.ExitStack() as stack:
        cache.open_verified(url, hash_type, digest, cache_dir, net, stack)
    return cache.entry_path(cache_dir, hash_type, digest)


def extract(name, url, members, digest=None, mode="0755", user="root", group="root", test=False, **options):
    """
    Extract selected members of the tar archive (.tar.gz, .tgz, .tar.xz, .tar) at ``url`` into the directory
    ``name``, after verifying the archive's digest. ``members`` maps each file name to write in ``name`` to its
    member path in the archive. Each file is written atomically and only when its content differs; an archive with
    an unsafe member (absolute path, ``..``, escaping link, device file) is refused as a whole. Returns
    ``{"changes": {<path>: {"digest": {old, new}} or mode/user/group changes}, "comment": ...}``.

    With a ``cache_dir`` the member digests are recorded, so a re-apply compares the files without any request.
    With ``test=True`` nothing is written and nothing is fetched. The other keyword arguments are the download
    options (module docstring).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_artifact.extract /usr/local/bin \\
            https://github.com/etcd-io/etcd/releases/download/v3.6.14/etcd-v3.6.14-linux-amd64.tar.gz \\
            members='{etcd: etcd-v3.6.14-linux-amd64/etcd, etcdctl: etcd-v3.6.14-linux-amd64/etcdctl}' \\
            digest=ffe840ff9295808e88cce2794a18a5ac87f12a5203c8314d0bf6aa119b41bac5
    """
    dest_dir = _abspath(name)
    members = archive.check_members(members)
    url, hash_type, digest, checksum_url, cache_dir, net = _source(url, digest, options)
    mode, uid, gid = files.parse_mode(mode), files.owner_id(user, "user"), files.owner_id(group, "group")
    if os.path.exists(dest_dir) and not os.path.isdir(dest_dir):
        raise CommandExecutionError(f"k8s_artifact: {dest_dir} exists and is not a directory")

    paths = {dest: os.path.join(dest_dir, dest) for dest in members}
    current = {dest: cache.installed_digest(path, "sha256", cache_dir, record=not test) for dest, path in paths.items()}
    digest = _wanted_digest(url, digest, checksum_url, hash_type, cache_dir, net, test)
    if digest is None:
        return {
            "changes": {
                p: {"digest": {"old": cache.tag("sha256", current[d]), "new": f"from {url}"}} for d, p in paths.items()
            },
            "comment": f"{url} would be checked against the digest in {checksum_url} (not fetched in test "
            f"mode) and {', '.join(members)} extracted into {dest_dir} where they differ",
        }

    manifest = cache.manifest_load(cache_dir, hash_type, digest)
    expected = {dest: manifest.get(member) for dest, member in members.items()}
    if test and not all(expected.values()):
        with contextlib.ExitStack() as stack:
            fh = cache.cached_readonly(cache_dir, hash_type, digest, stack)
            if fh is not None:
                with tarfile.open(fileobj=fh, mode="r:*") as tf:
                    expected = archive.hash_selected(tf, archive.select_members(tf, members, url))
    if all(expected.values()):
        changes = archive.archive_changes(paths, current, expected, mode, uid, gid)
        stale = [dest for dest in members if current[dest] != expected[dest]]
        if not changes:
            return {
                "changes": {},
                "comment": f"{', '.join(members)} in {dest_dir} are up to date ({hash_type} {digest} archive)",
            }
        if test:
            return {"changes": changes, "comment": f"{len(changes)} file(s) in {dest_dir} would be updated from {url}"}
        if not stale:
            for path in changes:
                files.fix_meta(path, mode, uid, gid)
            return {"changes": changes, "comment": f"mode/owner of {len(changes)} file(s) in {dest_dir} updated"}
    elif test:
        return {
            "changes": {
                p: {"digest": {"old": cache.tag("sha256", current[d]), "new": f"from {url}"}} for d, p in paths.items()
            },
            "comment": f"{url} would be downloaded ({hash_type} {digest}) and {', '.join(members)} extracted "
            f"into {dest_dir} where they differ",
        }

    with contextlib.ExitStack() as stack:
        fh = cache.open_verified(url, hash_type, digest, cache_dir, net, stack)
        try:
            tf = stack.enter_context(tarfile.open(fileobj=fh, mode="r:*"))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise CommandExecutionError(f"k8s_artifact: {url} is not a readable tar archive: {exc}") from None
        selected = archive.select_members(tf, members, url)
        os.makedirs(dest_dir, mode=0o755, exist_ok=True)
        digests, changes = archive.extract_selected(tf, selected, paths, current, mode, uid, gid)
    cache.manifest_save(cache_dir, hash_type, digest, {members[dest]: hexdigest for dest, hexdigest in digests.items()})
    log.info(
        "k8s_artifact: %s (%s verified): %d of %d member(s) written to %s",
        url,
        hash_type,
        sum(1 for c in changes.values() if "digest" in c),
        len(members),
        dest_dir,
    )
    return {
        "changes": changes,
        "comment": f"{', '.join(members)} extracted into {dest_dir} from {url} ({hash_type} {digest} verified)"
        if changes
        else f"{', '.join(members)} in {dest_dir} are up to date",
    }


def _mirror_path(root, url):
    """<root>/<host>/<path> for an upstream URL (the layout mirror_url expects); never outside root."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.netloc.rpartition("@")[2]
    rel = posixpath.normpath(f"{host}/{urllib.parse.unquote(parsed.path).lstrip('/')}")
    if not host or host in (".", "..") or "/" in host or archive.escapes(rel) or rel == host:
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
            checksum_text = download.fetch_text(info["upstream_checksum_url"], net)
        try:
            digest = parse_checksums(checksum_text, download.url_filename(url), hash_type)
        except CommandExecutionError as exc:
            raise CommandExecutionError(f"{exc} ({info['upstream_checksum_url']})") from None
    path = _mirror_path(root, url)
    result = {
        "component": component,
        "version": info["version"],
        "arch": arch,
        "url": url,
        "path": path,
        "hash_type": hash_type,
        "digest": digest,
        "status": "present",
    }
    if file_digest(path, hash_type) != digest:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with files.atomic(path, 0o644) as fh:
            actual, size, seconds = download.download_into(url, fh, hash_type, net)
            download.check(url, hash_type, digest, actual, size, path)
        download.log_download(url, hash_type, size, seconds, path)
        result["status"] = "downloaded"
    if checksum_path and not os.path.isfile(checksum_path):
        os.makedirs(os.path.dirname(checksum_path), mode=0o755, exist_ok=True)
        with files.atomic(checksum_path, 0o644) as fh:
            fh.write(checksum_text.encode())
    return result


def mirror_populate(
    directory,
    config=None,
    components=None,
    arches=None,
    connect_timeout=None,
    read_timeout=None,
    retries=None,
    backoff=1.0,
    max_redirects=5,
    max_bytes=download.DEFAULT_MAX_BYTES,
):
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
            raise SaltInvocationError(
                "k8s_artifact.mirror_populate: the k8s module is not loaded; give components=[...]"
            )
        components = __salt__["k8s.needed_components"](config)
    if isinstance(components, str):
        components = [c.strip() for c in components.split(",") if c.strip()]
    arches = arches or [config["arch"]]
    if isinstance(arches, str):
        arches = [a.strip() for a in arches.split(",") if a.strip()]
    settings = config["artifacts"]
    net = download.Net(
        settings["connect_timeout"] if connect_timeout is None else connect_timeout,
        settings["read_timeout"] if read_timeout is None else read_timeout,
        settings["retries"] if retries is None else retries,
        backoff,
        max_redirects,
    )
    root = _abspath(directory, "directory")
    results, errors = [], []
    for component in dict.fromkeys(components):
        for arch in dict.fromkeys(arches):
            try:
                results.append(_mirror_one(root, component, config, arch, net))
            except (CommandExecutionError, SaltInvocationError) as exc:
                errors.append(f"{component} ({arch}): {exc}")
    if errors:
        raise CommandExecutionError(
            f"k8s_artifact.mirror_populate: {len(errors)} artifact(s) failed or were "
            f"refused; {len(results)} other(s) are in {root}:\n  - " + "\n  - ".join(errors)
        )
    log.info(
        "k8s_artifact: mirror %s: %d artifact(s), %d downloaded",
        root,
        len(results),
        sum(1 for r in results if r["status"] == "downloaded"),
    )
    return {"directory": root, "artifacts": results}
