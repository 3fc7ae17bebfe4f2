"""The lab's salt-master takes its peer rules and worker pools from the README without PyYAML (tests/lab/labctl.py
runs on the host's python3): its small parser must read the README block exactly as YAML does."""

import importlib.util
import pathlib

from tests.support.master_conf import README_MASTER_CONF

LABCTL = pathlib.Path(__file__).resolve().parents[1] / "lab" / "labctl.py"


def load_labctl():
    spec = importlib.util.spec_from_file_location("kubesalt_labctl", LABCTL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lab_master_reads_the_readme_peer_rules_and_worker_pools_as_yaml_does():
    labctl = load_labctl()
    assert labctl.peer_rules() == README_MASTER_CONF["peer"]
    assert labctl.worker_pools() == README_MASTER_CONF["worker_pools"]
    assert any("publish" in pool["commands"] for pool in labctl.worker_pools().values())
