"""Backup of the CA directory (k8s_pki.ca_backup, the k8s_pki.ca_backup_present state) and its restore onto a new CA
minion, with the real modules, real CAs and real X25519 sealing: 0600 archives in a 0700 directory, one archive per
content (a re-run writes nothing), sealed archives unreadable without the private key, cleartext never pushed."""

import os
import stat

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support.pki_fixtures import cluster, tree  # noqa: F401


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def ca_dir(cluster):
    return cluster.config("master01")["paths"]["ca_dir"]


def test_ca_backup_is_0600_in_a_0700_directory_and_written_once_per_content(cluster, tmp_path):
    pki = cluster.execution("master01")
    first = pki.ca_backup(directory=str(tmp_path / "backups"))
    assert first["created"] is True and first["encrypted"] is False and first["pushed"] is False
    assert mode(first["path"]) == 0o600 and mode(tmp_path / "backups") == 0o700
    again = pki.ca_backup(directory=str(tmp_path / "backups"))
    assert again == dict(first, created=False)
    assert os.listdir(tmp_path / "backups") == [os.path.basename(first["path"])]


def test_the_state_reports_then_writes_then_changes_nothing(cluster, tmp_path):
    target = str(tmp_path / "backups")
    dry = cluster.states("master01", test=True).ca_backup_present(target)
    assert dry["result"] is None and dry["changes"]["archive"].startswith(target) and not os.path.exists(target)
    done = cluster.states("master01").ca_backup_present(target)
    assert done["result"] is True and done["changes"]["archive"] == dry["changes"]["archive"]
    assert cluster.states("master01").ca_backup_present(target)["changes"] == {}
    assert cluster.states("master01", test=True).ca_backup_present(target)["changes"] == {}


def test_a_sealed_backup_restores_onto_a_new_ca_minion_only_with_the_private_key(cluster, tmp_path):
    pki = cluster.execution("master01")
    keys = pki.backup_keypair(str(tmp_path / "offline" / "backup.key"))
    assert mode(keys["private_key_file"]) == 0o600
    sealed = pki.ca_backup(directory=str(tmp_path / "backups"), recipient=keys["recipient"])
    assert sealed["encrypted"] and sealed["path"].endswith(".sealed")
    original = {name: (pathlib_read(ca_dir(cluster), name)) for name in os.listdir(ca_dir(cluster))}
    content = open(sealed["path"], "rb").read()  # noqa: SIM115
    assert b"PRIVATE KEY" not in content and all(v not in content for v in original.values())
    # the CA minion's disk is gone: a new machine with the same id gets the backup
    lost = ca_dir(cluster)
    os.rename(lost, lost + ".lost")
    with pytest.raises(SaltInvocationError, match="pass private_key_file"):
        pki.ca_restore(sealed["path"], config=cluster.config("master01"))
    other = pki.backup_keypair(str(tmp_path / "offline" / "other.key"))["private_key_file"]
    with pytest.raises(CommandExecutionError, match="does not decrypt"):
        pki.ca_restore(sealed["path"], other, config=cluster.config("master01"))
    restored = pki.ca_restore(sealed["path"], keys["private_key_file"], config=cluster.config("master01"))
    assert restored["moved_aside"] is None and mode(lost) == 0o700
    assert {name: pathlib_read(lost, name) for name in os.listdir(lost)} == original
    assert all(mode(os.path.join(lost, name)) == 0o600 for name in os.listdir(lost))
    # the restored CA signs again: a node's certificate is issued from it
    assert cluster.issue("worker01", "kubelet")["result"] is True


def test_cleartext_archives_never_leave_the_ca_minion(cluster, tmp_path):
    with pytest.raises(SaltInvocationError, match="needs k8s:pki:backup:recipient"):
        cluster.execution("master01").ca_backup(directory=str(tmp_path / "out"), push=True)
    assert not (tmp_path / "out").exists()


def test_only_the_ca_minion_backs_up_and_a_key_file_is_never_overwritten(cluster, tmp_path):
    with pytest.raises(CommandExecutionError):
        cluster.execution("master02").ca_backup(directory=str(tmp_path / "b"))
    pki = cluster.execution("master01")
    pki.backup_keypair(str(tmp_path / "k"))
    with pytest.raises(CommandExecutionError, match="refusing to overwrite"):
        pki.backup_keypair(str(tmp_path / "k"))


def pathlib_read(directory, name):
    with open(os.path.join(directory, name), "rb") as fh:
        return fh.read()
