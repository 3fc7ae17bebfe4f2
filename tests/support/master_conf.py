"""The salt-master configuration the README documents (its `# /etc/salt/master.d/kubesalt.conf` YAML block), for
every harness that starts a master: the integration tests, the benchmarks, the unit tests of what reads it."""

import pathlib

import yaml

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def readme_master_conf():
    """The README's `# /etc/salt/master.d/kubesalt.conf` YAML block, parsed."""
    text = README.read_text()
    start = text.index("# /etc/salt/master.d/kubesalt.conf\n")
    return yaml.safe_load(text[start:text.index("```", start)])


README_MASTER_CONF = readme_master_conf()
PEER_RULES = README_MASTER_CONF["peer"]
WORKER_POOLS = README_MASTER_CONF["worker_pools"]
