"""kubesalt's salt-master configuration, `conf/master.d/kubesalt.conf` (what users install as
/etc/salt/master.d/kubesalt.conf), loaded with YAML for every harness that starts a master: the integration tests,
the benchmarks and the unit tests of what reads it."""

import pathlib

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
MASTER_CONF_FILE = REPO / "conf" / "master.d" / "kubesalt.conf"

MASTER_CONF = yaml.safe_load(MASTER_CONF_FILE.read_text())
PEER_RULES = MASTER_CONF["peer"]
WORKER_POOLS = MASTER_CONF["worker_pools"]
REACTOR = MASTER_CONF["reactor"]
