"""`salt-run k8s.status` against real daemons, through real minions: etcd (Debian's) and kube-apiserver 1.20.2 run
with master01's own certificates -- issued by the formula over peer publish -- on loopback ports, and the pillar
points the nodes at them (k8s:manage_services true, so k8s_ops.node_status probes). The status shows the etcd
member healthy and leading with its database size, the API server ready as every node sees it, and the Node objects
Ready; a node NotReady or etcd stopped gives a non-zero exit naming it. There is no kubelet here: the Node objects
are created with each node's kubelet certificate and their status written the way a kubelet writes it."""

import datetime
import json
import pathlib

import pytest
import requests

from tests.integration.conftest import NODES, salt_run
from tests.support import apiserver, etcd_cluster

pytestmark = pytest.mark.integration
ETCD_VERSION = None  # read from the binary below


class NodePlane(apiserver.ControlPlane):
    """tests/support/apiserver.py's etcd + kube-apiserver, on master01's files as the formula wrote them."""

    def __init__(self, directory, config, pki_dir, ports):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.etcd_port, self.peer_port, self.port = ports
        self.server = f"https://127.0.0.1:{self.port}"
        self._config, self._pki_dir = config, pathlib.Path(pki_dir)
        self.processes, self.logs = {}, {}
        self.audit_log = self.dir / "audit.log"

    def config(self, minion_id="master01"):
        return self._config

    @property
    def pki_dir(self):
        return self._pki_dir

    def files(self, identity, minion_id="master01"):
        return {"cert": str(self.pki_dir / f"{identity}.crt"), "key": str(self.pki_dir / f"{identity}.key")}


def kubelet_session(node_root, minion):
    pki = node_root(minion) / "etc/kubernetes/pki"
    session = requests.Session()
    session.trust_env = False
    session.verify = str(pki / "kubernetes-ca.crt")
    session.cert = (str(pki / "kubelet.crt"), str(pki / "kubelet.key"))
    return session


def report_status(plane, node, ready):
    """What a kubelet reports: its Ready condition and nodeInfo."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": "KubeletReady" if ready else "KubeletNotReady",
        "message": "kubelet is posting ready status" if ready else "container runtime network not ready",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    info = {"kubeletVersion": "v1.20.2", "containerRuntimeVersion": "containerd://1.6.20"}
    with plane.session() as admin:
        answer = admin.patch(
            f"{plane.server}/api/v1/nodes/{node}/status",
            json={"status": {"conditions": [condition], "nodeInfo": info}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def plane(runner_synced, apply_sls, salt_cli, pillar_dir, node_root, tmp_path_factory):
    absent = apiserver.missing()
    if absent:
        pytest.skip(f"{apiserver.SKIP_REASON} (missing: {', '.join(absent)})")
    for minion, (grains, _, _) in NODES.items():
        assert apply_sls(minion, f"k8s.{grains[0]}").ok
    ports = etcd_cluster.free_ports(3)
    override = pillar_dir / "override.sls"
    override.write_text(
        json.dumps(
            {
                "k8s": {
                    "manage_services": True,
                    "etcd": {"client_port": ports[0], "peer_port": ports[1]},
                    "apiserver": {"port": ports[2], "endpoint": f"https://127.0.0.1:{ports[2]}"},
                    # every node at the one API server on loopback: no node-local balancer runs here
                    "api_balancer": {"enabled": False},
                }
            }
        )
    )
    assert salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt="*").returncode == 0
    config = salt_cli.run("k8s.config", minion_tgt="master01").data
    plane = NodePlane(tmp_path_factory.mktemp("daemons"), config, node_root("master01") / "etc/kubernetes/pki", ports)
    try:
        plane._start_apiserver(plane._start_etcd())
        for minion in NODES:
            with kubelet_session(node_root, minion) as kubelet:
                answer = kubelet.post(f"{plane.server}/api/v1/nodes", json={"metadata": {"name": minion}})
            assert answer.status_code in (201, 409), answer.text
            report_status(plane, minion, ready=True)
        yield plane
    finally:
        plane.stop()
        override.write_text("{}\n")
        salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt="*")


def status(salt_master):
    out = salt_run(salt_master, "--out=json", "k8s.status")
    answer = json.loads(out.stdout)
    return out.returncode, answer["report"]


def test_status_shows_etcd_the_api_and_every_node_ready_from_the_real_daemons(plane, salt_master):
    rc, report = status(salt_master)
    assert rc == 0 and report["attention"] == [], report["attention"]
    member = report["etcd"]["members"]["master01"]
    assert member["healthy"] and member["is_leader"] and report["etcd"]["leader"] == "master01"
    assert member["db_size"] > 0 and member["endpoint"] == f"https://127.0.0.1:{plane.etcd_port}"  # as it advertises
    assert member["version"] == report["nodes"]["master01"]["versions"]["etcd"]["installed"]
    (api,) = report["api"]
    assert api == {"server": plane.server, "from": sorted(NODES), "ready": True, "errors": {}}
    for minion in NODES:
        node = report["nodes"][minion]
        assert node["ready"] is True, (minion, node)
        assert node["versions"]["kubelet"] == {"installed": "1.20.2", "running": "1.20.2"}
        assert node["versions"]["containerd"]["running"] == "1.6.20"
    assert report["nodes_listed_by"] == "master01"
    text = salt_run(salt_master, "k8s.status").stdout
    assert "ETCD MEMBER" in text and "quorum: yes" in text and f"{plane.server}  yes    master01, worker01" in text
    print(text)  # the README's example


def test_a_node_not_ready_gives_a_non_zero_exit_naming_it(plane, salt_master):
    report_status(plane, "worker02", ready=False)
    try:
        rc, report = status(salt_master)
        assert rc == 1
        assert report["attention"] == [
            "node worker02 is not Ready (KubeletNotReady: container runtime network not ready)"
        ]
    finally:
        report_status(plane, "worker02", ready=True)


def test_etcd_down_gives_a_non_zero_exit_naming_the_member_and_the_api_that_depends_on_it(plane, salt_master):
    etcd_cluster.stop_process(plane.processes["etcd"])
    rc, report = status(salt_master)
    assert rc == 1
    text = "\n".join(report["attention"])
    assert "etcd could not be probed from master01" in text, report["attention"]
    assert f"API server {plane.server} is not ready" in text, report["attention"]
