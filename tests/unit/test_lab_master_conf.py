"""The lab's salt-master runs with the configuration users install: conf/master.d/kubesalt.conf copied byte for byte
into its master.d, and only the lab's own settings (id, root_dir, the bridge interface, no auto-accept) in a file
sorted after it -- loaded here through Salt's own config loader, as the master loads it."""

import os

import salt.config
import yaml

from tests.lab.labctl import master
from tests.support.master_conf import MASTER_CONF, MASTER_CONF_FILE, PEER_RULES, REPO, WORKER_POOLS


def test_the_lab_master_takes_the_shipped_config_verbatim_and_adds_its_settings_after_it(tmp_path):
    master.write_master_config(str(tmp_path), str(REPO))
    assert sorted(os.listdir(tmp_path / "master.d")) == ["kubesalt.conf", master.LAB_CONF_NAME]
    assert (tmp_path / "master.d" / "kubesalt.conf").read_bytes() == MASTER_CONF_FILE.read_bytes()
    opts = salt.config.master_config(str(tmp_path / "master"))
    # what users install: the peer rules, the worker pools, and the roots exactly as shipped (in the lab, /srv/kubesalt
    # and /srv/pillar are the served tree and the lab pillar inside the master's mount namespace)
    assert opts["peer"] == PEER_RULES
    assert opts["worker_pools"] == WORKER_POOLS
    assert opts["file_roots"] == MASTER_CONF["file_roots"] == {"base": [master.SRV_TREE + "/formulas"]}
    assert opts["pillar_roots"] == MASTER_CONF["pillar_roots"] == {"base": [master.SRV_PILLAR]}
    # the lab's own settings win over salt's defaults and live under the lab's root_dir
    assert opts["id"] == "kubesalt-lab-master" and opts["interface"] == "10.240.0.1"
    assert opts["auto_accept"] is False and opts["open_mode"] is False
    assert opts["pki_dir"] == str(tmp_path / "etc/salt/pki/master")


def test_a_later_master_d_file_merges_lists_so_the_lab_sets_no_roots_of_its_own(tmp_path):
    """Why the lab does not override file_roots in its own master.d file: Salt merges the lists of master.d files
    (include_config -> dictupdate.update(..., merge_lists=True)) instead of replacing them, so the shipped
    /srv/kubesalt/formulas would stay first in line. If Salt ever replaces lists, this test says so."""
    (tmp_path / "master.d").mkdir()
    (tmp_path / "master").write_text("")
    (tmp_path / "master.d" / "kubesalt.conf").write_bytes(MASTER_CONF_FILE.read_bytes())
    (tmp_path / "master.d" / "zz-override.conf").write_text(
        yaml.safe_dump({"root_dir": str(tmp_path), "file_roots": {"base": ["/elsewhere/formulas"]}})
    )
    opts = salt.config.master_config(str(tmp_path / "master"))
    assert opts["file_roots"] == {"base": ["/srv/kubesalt/formulas", "/elsewhere/formulas"]}
