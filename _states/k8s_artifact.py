"""
kubesalt artifacts as states: a verified binary (``managed``) or verified files out of an archive (``extracted``).

Thin wrappers around the ``k8s_artifact`` execution module (all logic, downloads and verification live there):
compare, act, report. Both states are idempotent -- a file whose digest already matches is left alone and no request
is made -- and honest in test mode (``result: None``, the changes that would be made, nothing written, nothing
downloaded). Changes report digests as ``sha256:<hex>`` old -> new, plus mode/user/group when they change.

Two states rather than one ``managed`` with a ``members`` argument: a binary's digest is the file's own digest,
while an archive's digest is not the digest of any file it installs, and the target is a file in one case and a
directory in the other. Keeping them apart keeps each state's arguments and changes unambiguous.

.. code-block:: jinja

    {%- set a = salt['k8s_artifact.resolve']('kube-apiserver', k8s) %}
    kube-apiserver binary:
      k8s_artifact.managed:
        - name: {{ k8s.paths.bin_dir }}/kube-apiserver
        - url: {{ a.url }}
        - digest: {{ a.digest | json }}
        - hash_type: {{ a.hash_type }}
        - checksum_url: {{ a.checksum_url | json }}
        - cache_dir: {{ k8s.artifacts.cache_dir }}

    {%- set e = salt['k8s_artifact.resolve']('etcd', k8s) %}
    etcd binaries:
      k8s_artifact.extracted:
        - name: {{ k8s.paths.bin_dir }}
        - url: {{ e.url }}
        - digest: {{ e.digest | json }}
        - hash_type: {{ e.hash_type }}
        - checksum_url: {{ e.checksum_url | json }}
        - members: {{ e.members | json }}
        - cache_dir: {{ k8s.artifacts.cache_dir }}
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "k8s_artifact"


def __virtual__():
    if "k8s_artifact.install" in __salt__:
        return __virtualname__
    return (
        False,
        "k8s_artifact: the k8s_artifact execution module is not loaded (is requests installed? run "
        "saltutil.sync_modules)",
    )


def _run(name, function, **kwargs):
    """Call execution ``function`` for ``name`` (in test mode when Salt is) and report its outcome as a state."""
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    test = bool(__opts__.get("test"))
    try:
        outcome = __salt__[function](name, **dict(kwargs, test=test))
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = str(exc)
        return ret
    ret["changes"] = outcome["changes"]
    ret["comment"] = outcome["comment"]
    ret["result"] = None if test and outcome["changes"] else True
    return ret


def managed(name, url, digest=None, mode="0755", user="root", group="root", **options):
    """
    Install the single file at ``url`` as ``name`` once its digest is verified (atomically; the old file is kept
    on any failure).

    name
        Absolute path of the installed file (its directory is created if missing).
    url
        http(s) URL of the file (from ``k8s_artifact.resolve``, mirror already applied).
    digest / hash_type
        The pinned digest (hex) and its type, ``sha256`` or ``sha512``. Required unless ``checksum_url`` is given.
    checksum_url
        An opted-in official checksum file to take the digest from when none is pinned.
    mode / user / group
        Of the installed file. ``user``/``group`` empty: leave the owner alone.
    cache_dir
        Verified downloads are kept here by digest; empty disables the cache.
    connect_timeout / read_timeout / retries / backoff / max_redirects / max_bytes
        Network limits (seconds, extra attempts, first wait between them, redirects, bytes). These and
        ``hash_type``, ``checksum_url`` and ``cache_dir`` are the download options of the ``k8s_artifact``
        execution module (defaults there); any other argument fails the state, naming it.

    .. code-block:: jinja

        kubectl binary:
          k8s_artifact.managed:
            - name: /usr/local/bin/kubectl
            - url: https://dl.k8s.io/release/v1.34.10/bin/linux/amd64/kubectl
            - digest: 95bd70842bd11a524d24acd5b68726899e3488e153e45e2b4ae846545beda050
    """
    return _run(name, "k8s_artifact.install", url=url, digest=digest, mode=mode, user=user, group=group, **options)


def extracted(name, url, members, digest=None, mode="0755", user="root", group="root", **options):
    """
    Extract selected members of the tar archive at ``url`` into the directory ``name``, once the archive's digest is
    verified. Each file is written atomically and only when its content differs. Archives with unsafe members
    (absolute paths, ``..``, links leaving the archive, device files) are refused whole.

    name
        Absolute path of the destination directory (created if missing).
    members
        Mapping of file name to write in ``name`` -> member path in the archive (``resolve``'s ``members``).

    The other arguments are those of :py:func:`managed`; ``digest`` is the archive's.

    .. code-block:: jinja

        etcd binaries:
          k8s_artifact.extracted:
            - name: /usr/local/bin
            - url: https://github.com/etcd-io/etcd/releases/download/v3.6.14/etcd-v3.6.14-linux-amd64.tar.gz
            - digest: ffe840ff9295808e88cce2794a18a5ac87f12a5203c8314d0bf6aa119b41bac5
            - members:
                etcd: etcd-v3.6.14-linux-amd64/etcd
                etcdctl: etcd-v3.6.14-linux-amd64/etcdctl
    """
    return _run(
        name,
        "k8s_artifact.extract",
        url=url,
        members=members,
        digest=digest,
        mode=mode,
        user=user,
        group=group,
        **options,
    )
