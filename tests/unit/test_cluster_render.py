"""formulas/k8s/cluster.sls rendered by Salt's own Jinja + YAML renderers with the master options Salt resolves from
a master config: the orchestration warns up front when the salt-master lacks the README's `publish` worker pool."""

import pathlib

import pytest
import salt.config
import salt.utils.templates
import salt.utils.yaml

from tests.support.fileserver import master_functions
from tests.support.master_conf import WORKER_POOLS

CLUSTER_SLS = pathlib.Path(__file__).resolve().parents[2] / "formulas" / "k8s" / "cluster.sls"
WARNING_STATE = "salt-master worker pools"


def master_opts(tmp_path, extra):
    """What salt.config.master_config makes of a master config file holding ``extra`` (defaults filled in, the
    effective worker pools resolved)."""
    path = tmp_path / "master"
    # file_roots as conf/master.d/kubesalt.conf serves them: the orchestration imports k8s/defaults.yaml
    path.write_text(
        salt.utils.yaml.safe_dump(
            {
                "root_dir": str(tmp_path),
                "file_client": "local",
                "file_roots": {"base": [str(CLUSTER_SLS.parents[1])]},
                **extra,
            }
        )
    )
    return salt.config.master_config(str(path))


def render(opts, pillar_get=lambda key, default=None: default):
    result = salt.utils.templates.render_jinja_tmpl(
        CLUSTER_SLS.read_text(),
        {
            "opts": opts,
            "salt": {"pillar.get": pillar_get, **master_functions(opts)},
            "pillar": {},
            "grains": {},
            "saltenv": "base",
            "sls": "k8s.cluster",
        },
    )
    return salt.utils.yaml.safe_load(result)


@pytest.mark.parametrize("extra", [{}, {"worker_threads": 8}], ids=["salt-defaults", "worker_threads"])
def test_master_without_a_publish_pool_gets_a_warning_and_no_change(tmp_path, extra):
    states = render(master_opts(tmp_path, extra))
    state = states[WARNING_STATE]["test.configurable_test_state"]
    args = {k: v for item in state for k, v in item.items()}
    assert args["changes"] is False and args["result"] is True
    assert "worker pool" in args["warnings"] and "publish" in args["warnings"]
    # it is a notice, not a step: nothing requires it and the first real step is still the module sync
    assert "sync kubesalt extensions" in states


def test_batch_size_is_the_defaults_yaml_value_unless_the_master_pillar_sets_one(tmp_path):
    defaults = salt.utils.yaml.safe_load((CLUSTER_SLS.parent / "defaults.yaml").read_text())["k8s"]
    states = render(master_opts(tmp_path, {"worker_pools": WORKER_POOLS}))
    step = {k: v for item in states["nodes (masters and workers)"]["salt.state"] for k, v in item.items()}
    assert step["batch"] == defaults["worker_batch"]
    pillar = {"k8s:worker_batch": "25%"}
    states = render(
        master_opts(tmp_path, {"worker_pools": WORKER_POOLS}),
        pillar_get=lambda key, default=None: pillar.get(key, default),
    )
    step = {k: v for item in states["nodes (masters and workers)"]["salt.state"] for k, v in item.items()}
    assert step["batch"] == "25%"


def test_master_with_the_readme_pools_renders_no_warning(tmp_path):
    states = render(master_opts(tmp_path, {"worker_pools": WORKER_POOLS}))
    assert WARNING_STATE not in states
    assert "sync kubesalt extensions" in states
