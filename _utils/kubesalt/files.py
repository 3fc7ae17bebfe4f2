"""
The file layer every kubesalt writer shares: atomic writes, modes and owners.

A file is written to a temporary file in its destination directory (created 0600 by ``mkstemp``, so nothing is ever
readable in between), flushed, given its owner and mode, fsync'ed, renamed over the old file (``os.replace``) and
the directory is fsync'ed. Any failure leaves the previous file byte-identical and removes the temporary file.
"""

import contextlib
import errno
import hashlib
import os
import stat
import tempfile

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import grp
    import pwd
except ImportError:  # pragma: no cover - not a POSIX system
    grp = pwd = None

# Files are read and written in chunks of this size.
CHUNK = 1024 * 1024
# Temporary files end with this: a crash leaves at most one such file behind, and it is recognisable.
TMP_SUFFIX = ".kubesalt.part"


def parse_mode(value, what="mode"):
    """``'0600'``, ``'600'``, ``0o600`` (YAML ``0600``) or ``600`` -> ``0o600``; raise naming ``what`` otherwise."""
    # An int above 0o777 cannot be a YAML octal like 0600 (384): it is the digits of one, e.g. 600 or 1755.
    text = str(value) if isinstance(value, int) and value > 0o777 else str(value).strip().strip("'\"")
    try:
        mode = value if isinstance(value, int) and value <= 0o777 else int(text.replace("0o", "0"), 8)
    except ValueError:
        mode = -1
    if isinstance(value, bool):
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise SaltInvocationError(f"{what} '{value}' is not an octal file mode such as '0755' (quote it in YAML)")
    return mode


def owner_id(name, kind):
    """uid (``kind`` 'user') or gid ('group') of ``name``; -1 (leave as is) when empty; numbers taken as they are."""
    if name in (None, ""):
        return -1
    if str(name).isdigit():
        return int(name)
    try:
        return pwd.getpwnam(str(name)).pw_uid if kind == "user" else grp.getgrnam(str(name)).gr_gid
    except (KeyError, AttributeError):
        raise SaltInvocationError(f"{kind} '{name}' does not exist on this system") from None


def _name_of(ident, kind):
    with contextlib.suppress(KeyError, AttributeError):
        return pwd.getpwuid(ident).pw_name if kind == "user" else grp.getgrgid(ident).gr_name
    return str(ident)


def meta(path):
    """``(mode, "user:group")`` of ``path`` (symlinks followed; names where the system knows them, else the ids), or
    None when it does not exist."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.S_IMODE(info.st_mode), f"{_name_of(info.st_uid, 'user')}:{_name_of(info.st_gid, 'group')}"


def file_mode(path):
    """The permission bits of ``path``, or None when it does not exist."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def meta_changes(path, mode, uid=-1, gid=-1):
    """``{"mode"|"user"|"group": {"old", "new"}}``: how the existing file ``path`` differs."""
    info = os.lstat(path)
    changes = {}
    if stat.S_IMODE(info.st_mode) != mode:
        changes["mode"] = {"old": f"{stat.S_IMODE(info.st_mode):04o}", "new": f"{mode:04o}"}
    if uid != -1 and info.st_uid != uid:
        changes["user"] = {"old": _name_of(info.st_uid, "user"), "new": _name_of(uid, "user")}
    if gid != -1 and info.st_gid != gid:
        changes["group"] = {"old": _name_of(info.st_gid, "group"), "new": _name_of(gid, "group")}
    return changes


def fix_meta(path, mode, uid=-1, gid=-1):
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid)
    os.chmod(path, mode)


def read_text(path, encoding="ascii"):
    """The text of ``path``, or None when it does not exist; an unreadable file raises naming it."""
    try:
        with open(path, encoding=encoding) as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandExecutionError(f"{path} cannot be read ({exc})") from None


def missing_dirs(path):
    """The directories that would have to be created for the file ``path``, outermost first."""
    missing, parent = [], os.path.dirname(os.path.abspath(path))
    while parent and not os.path.isdir(parent):
        missing.insert(0, parent)
        parent = os.path.dirname(parent)
    return missing


def make_dirs(path, mode=0o755):
    """Create the missing directories of the file ``path``: its own directory with ``mode``, any parent 0755."""
    own = os.path.dirname(os.path.abspath(path))
    for directory in missing_dirs(path):
        dir_mode = mode if directory == own else 0o755
        os.mkdir(directory, dir_mode)
        os.chmod(directory, dir_mode)  # not subject to the umask


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic(path, mode, uid=-1, gid=-1):
    """Yield a binary temporary file next to ``path``; a clean exit puts it in place of ``path``, an error removes
    it."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=TMP_SUFFIX)
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
    fsync_dir(directory)


def write(path, content, mode, uid=-1, gid=-1, dir_mode=0o755):
    """Write ``content`` (text or bytes) to ``path`` atomically with ``mode``, creating missing directories (its own
    with ``dir_mode``)."""
    make_dirs(path, dir_mode)
    with atomic(path, mode, uid, gid) as fh:
        fh.write(content.encode() if isinstance(content, str) else content)


def digest(path, hash_type="sha256"):
    """The hex digest of the regular file at ``path``, or None when there is none (missing, or a symlink, which an
    install replaces by a regular file); a directory raises."""
    return digest_stamped(path, hash_type)[0]


def stamp(info):
    """What identifies a file's content version without reading it: device, inode, size, mtime and ctime (ns)."""
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def digest_stamped(path, hash_type="sha256"):
    """``(digest, stamp)`` of the regular file at ``path`` (:func:`digest`), where ``stamp`` (:func:`stamp`) is that of
    the bytes hashed, or None when the file changed while it was read. ``(None, None)`` when there is no regular
    file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None, None
    if stat.S_ISDIR(info.st_mode):
        raise CommandExecutionError(f"{path} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        return None, None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a symlink since the lstat
            return None, None
        raise
    hasher = hashlib.new(hash_type)
    with os.fdopen(fd, "rb") as fh:
        before = os.fstat(fh.fileno())
        if not stat.S_ISREG(before.st_mode):
            return None, None
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
        after = os.fstat(fh.fileno())
    return hasher.hexdigest(), (stamp(after) if stamp(before) == stamp(after) else None)
