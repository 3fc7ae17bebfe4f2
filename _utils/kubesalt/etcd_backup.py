"""
kubesalt's etcd snapshots on disk: taking one into a private directory (kept only once :py:func:`verify` accepts
it), listing and pruning them, and restoring one into a data directory with etcd's own tool. The checks of a
snapshot's content are ``kubesalt.snapshot``'s; ``k8s_etcd`` (the execution module) wraps these for Salt and
documents each step.
"""

import contextlib
import datetime
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile

from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import files, snapshot

SNAPSHOT_PATTERN = re.compile(r"etcd-snapshot-\d{8}T\d{6}\.\d{6}Z\.db")


def _stamp():
    """Now in UTC, as kubesalt's snapshot and moved-aside names carry it (sorts as it reads)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def check_keep(keep):
    """``keep`` as a number of snapshots to keep (at least 1)."""
    if int(keep) < 1:
        raise SaltInvocationError(f"keep {keep!r} must be at least 1 (k8s:etcd:backup:keep)")
    return int(keep)


def private_dir(path, what):
    """Create ``path`` 0700 (root's), or make an existing one 0700; refuse a symlink or a non-directory."""
    path = str(path)
    if not os.path.isabs(path):
        raise SaltInvocationError(f"{what} {path!r} must be an absolute path")
    if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
        raise CommandExecutionError(f"{what} {path} is a symlink or not a directory; refused")
    files.make_dirs(os.path.join(path, "x"), 0o700)
    os.chmod(path, 0o700)
    return path


def snapshots(directory):
    """kubesalt's snapshots in ``directory``, newest first: ``path``, ``size``, ``mtime``."""
    try:
        names = sorted((n for n in os.listdir(directory) if SNAPSHOT_PATTERN.fullmatch(n)), reverse=True)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        path = os.path.join(directory, name)
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode):
            found.append({"path": path, "size": info.st_size, "mtime": info.st_mtime})
    return found


def verify(path, min_revision=0):
    """The facts of snapshot ``path`` once it is sound, at least at ``min_revision`` and without a cleartext Secret;
    raises naming what is wrong (see ``k8s_etcd.verify_snapshot``)."""
    try:
        facts = snapshot.inspect(str(path))
    except (snapshot.SnapshotError, OSError, struct.error) as exc:
        raise CommandExecutionError(f"etcd snapshot {path} is not usable: {exc}") from exc
    reached = max(facts["revision"], facts["compact_revision"])
    # revision 1 is an empty cluster's: no key revision stands for it
    if int(min_revision or 0) > 1 and reached < int(min_revision):
        raise CommandExecutionError(
            f"etcd snapshot {path} is at revision {reached}, older than the cluster's {min_revision} when the snapshot "
            "began"
        )
    clear = facts.pop("cleartext_secrets")
    if clear:
        shown = ", ".join(clear[:5]) + (f" and {len(clear) - 5} more" if len(clear) > 5 else "")
        raise CommandExecutionError(
            f"etcd snapshot {path} holds {len(clear)} Secret(s) in cleartext ({shown}): Secrets must be encrypted at "
            "rest (EncryptionConfiguration); rewrite them (kubectl get secrets -A -o json | kubectl replace -f -) "
            "and let the API server compact etcd's history (every 5 minutes), then take the snapshot again"
        )
    return facts


def prune(directory, keep):
    """Remove all but the newest ``keep`` of kubesalt's snapshots in ``directory``; return what was removed."""
    keep = check_keep(keep)
    removed = []
    for entry in snapshots(directory)[keep:]:
        os.unlink(entry["path"])
        removed.append(entry["path"])
    return removed


def _copy_private(source, directory):
    target = os.path.join(private_dir(directory, "k8s:etcd:backup:copy_to"), os.path.basename(source))
    with open(source, "rb") as src, files.atomic(target, 0o600) as dst:
        shutil.copyfileobj(src, dst, files.CHUNK)
    return target


def take(open_client, directory, keep, copy_to=None):
    """
    Stream a snapshot from the first endpoint of ``open_client()`` (an :py:class:`kubesalt.etcd.EtcdClient`) into
    ``directory`` (made 0700), keep it only once :py:func:`verify` accepts it against the revision the cluster had
    when it began, prune to ``keep``, and copy it to ``copy_to`` when given (pruned there too).
    """
    check_keep(keep)
    directory = private_dir(directory, "k8s:etcd:backup:dir")
    name = f"etcd-snapshot-{_stamp()}.db"
    path = os.path.join(directory, name)
    with open_client() as client:
        endpoint = client.endpoints[0]
        client.endpoints = [endpoint]
        before = client.revision()
        fd, partial = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=files.TMP_SUFFIX)  # 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                client.snapshot(handle, endpoint)
                handle.flush()
                os.fsync(handle.fileno())
            facts = verify(partial, min_revision=before)
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        files.fsync_dir(directory)
    result = dict(facts, path=path, endpoint=endpoint, removed=prune(directory, keep))
    if copy_to:
        result["copied_to"] = _copy_private(path, copy_to)
        result["removed"] += prune(copy_to, keep)
    return result


def move_aside(path, reason):
    """Rename ``path`` to ``<path>.<reason>-<UTC time>``; return the new name, or None when ``path`` is absent."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", str(reason)):
        raise SaltInvocationError(f"reason {reason!r} must be a lowercase word (it becomes part of a file name)")
    if not os.path.lexists(path):
        return None
    target = f"{path}.{reason}-{_stamp()}"
    os.rename(path, target)
    files.fsync_dir(os.path.dirname(os.path.abspath(path)))
    return target


def restore_tool(directories=()):
    """``etcdutl``, else ``etcdctl``, from ``directories`` and then PATH."""
    for program in ("etcdutl", "etcdctl"):
        for directory in directories:
            candidate = os.path.join(directory, program)
            if os.access(candidate, os.X_OK):
                return candidate
        found = shutil.which(program)
        if found:
            return found
    raise CommandExecutionError(
        "neither etcdutl nor etcdctl was found next to etcd or on PATH; install etcd's client tools"
    )


def restore(snapshot_path, data_dir, name, peer_url, token, tool=None, bump_revision=1000000000):
    """Restore ``snapshot_path`` into ``data_dir`` as a one-member cluster (see ``k8s_etcd.restore``)."""
    facts = verify(snapshot_path)
    tool = tool or restore_tool()
    staging = f"{data_dir}.restoring"
    if os.path.lexists(staging):  # an interrupted restore's output: made again from the snapshot
        shutil.rmtree(staging)
    argv = [tool, "snapshot", "restore", str(snapshot_path), f"--name={name}", f"--data-dir={staging}"]
    argv += [f"--initial-cluster={name}={peer_url}", f"--initial-advertise-peer-urls={peer_url}"]
    argv += [f"--initial-cluster-token={token}"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ETCDCTL_API": "3"}
    usage = subprocess.run([tool, "snapshot", "restore", "--help"], capture_output=True, text=True, env=env)
    if bump_revision and "--bump-revision" in usage.stdout + usage.stderr:
        argv += [f"--bump-revision={int(bump_revision)}", "--mark-compacted"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise CommandExecutionError(
            f"{' '.join(argv[:3])} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-1500:]}"
        )
    aside = move_aside(data_dir, "before-restore")
    os.rename(staging, data_dir)
    os.chmod(data_dir, 0o700)
    return dict(facts, data_dir=data_dir, moved_aside=aside, tool=tool, snapshot=str(snapshot_path))
