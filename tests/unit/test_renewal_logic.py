"""Certificate renewal, piece by piece, on real certificates (the k8s_pki harness: real CAs, real signing) and a real
etcd for the lock:

- k8s_pki.expectations/check judge files by the rule k8s.pki renews by, without the settings (what the beacon does);
- the k8s_certs beacon fires once per change of the due set, again after `retry`, and never while nothing is due;
- k8s_ops.renew renews only what is due, restarts only the services watching a renewed certificate, and masters do so
  under the etcd lock -- released even when a restart fails. systemd and the API server do not exist here:
  service.restart and the API waits are recorded, not run (tests/lab/test_renewal.py runs them for real);
- the renewal reactor asks only the minion named in the tag.
"""

import functools
import os
import sys
import time

import pytest
import salt.utils.yaml

from tests.support import etcd_cluster, reactor
from tests.support.loader import ROOT, load
from tests.support.pki_fixtures import Cluster, reissue


@pytest.fixture
def cluster(tmp_path):
    """Five nodes (master01..03 with etcd, worker01..02), every certificate issued."""
    cluster = Cluster(tmp_path).create_cas()
    cluster.issue_all()
    return cluster


def ca_dir(cluster):
    return cluster.layout("master01")["cas"]["kubernetes-ca"]["cert"].rsplit("/", 1)[0]


def pki_for(cluster, minion):
    return cluster.execution(minion)


# --------------------------------------------------------------------------------------------------------------------
# k8s_pki.expectations / check: the beacon's rule is k8s.pki's rule
# --------------------------------------------------------------------------------------------------------------------
def test_check_judges_the_files_against_the_expectations_without_the_settings(cluster):
    pki = pki_for(cluster, "worker01")
    config = cluster.config("worker01")
    expected = pki.expectations(config, "worker01")
    assert sorted(expected) == ["kube-proxy", "kubelet"]
    assert expected["kubelet"]["cn"] == "system:node:worker01" and expected["kubelet"]["cert"].endswith("kubelet.crt")
    assert {i: r["state"] for i, r in pki.check(expected, 30).items()} == {"kube-proxy": "OK", "kubelet": "OK"}

    reissue(expected["kubelet"]["cert"], ca_dir(cluster), days=9)
    os.unlink(expected["kube-proxy"]["cert"])
    report = pki.check(expected, 30)
    assert report["kubelet"]["state"] == "renew" and report["kubelet"]["days_left"] == 9
    assert any("in less than renew_days (30)" in r for r in report["kubelet"]["reasons"])
    assert report["kube-proxy"]["state"] == "missing"
    # the same file, the same verdict as the status report (one rule)
    status = pki.status(config)
    assert status[expected["kubelet"]["cert"]]["reasons"] == report["kubelet"]["reasons"]


def test_check_sees_a_certificate_that_no_longer_matches_the_policy(cluster):
    """A worker's IP changed in the inventory: the expectations k8s.pki wrote for the beacon say so."""
    pki = pki_for(cluster, "worker01")
    moved = dict(cluster.pillar["nodes"]["worker01"], ip="10.240.0.31")
    cluster.pillar["nodes"] = dict(cluster.pillar["nodes"], worker01=moved)
    expected = pki.expectations(cluster.config("worker01"), "worker01")
    report = pki.check(expected, 30)
    assert report["kubelet"]["state"] == "renew" and report["kube-proxy"]["state"] == "OK"
    assert report["kubelet"]["reasons"] == ["IP SANs are ['10.240.0.21'], expected ['10.240.0.31']"]


# --------------------------------------------------------------------------------------------------------------------
# The beacon
# --------------------------------------------------------------------------------------------------------------------
def _shared_core():
    return {n: m for n, m in sys.modules.items() if n == "kubesalt" or n.startswith("kubesalt.")}


@pytest.fixture(autouse=True)
def keep_shared_core():
    """The beacon drops kubesalt from sys.modules (the minion's main process); put this process's copy back after each
    test, so later tests keep comparing against the same classes."""
    saved = _shared_core()
    yield
    sys.modules.update(saved)


def beacon_for(cluster, minion):
    pki = pki_for(cluster, minion)
    ops = load("k8s_ops", salt={"k8s_pki.check": pki.check}, opts={"id": minion, "test": False})
    beacon = load("k8s_certs", "beacons", salt={"k8s_ops.due_certificates": ops.due_certificates})
    config = [
        {"interval": 3600},
        {"retry": 60},
        {"disable_during_state_run": True},
        {"renew_days": 30},
        {"certificates": pki.expectations(cluster.config(minion), minion)},
    ]
    return beacon, config


def test_the_beacon_fires_once_per_change_of_the_due_set_and_again_after_retry(cluster, monkeypatch):
    beacon, config = beacon_for(cluster, "worker01")
    assert beacon.validate(config) == (True, "valid beacon configuration")
    assert beacon.beacon(config) == []  # nothing due: nothing fired
    expected = config[4]["certificates"]
    reissue(expected["kubelet"]["cert"], ca_dir(cluster), days=9)

    (event,) = beacon.beacon(config)
    assert event["tag"] == "due" and list(event["certificates"]) == ["kubelet"]
    assert event["certificates"]["kubelet"]["state"] == "renew" and event["certificates"]["kubelet"]["days_left"] == 9
    assert beacon.beacon(config) == [] and beacon.beacon(config) == []  # the same due set: quiet

    os.unlink(expected["kube-proxy"]["cert"])  # the set changes: fired at once
    (event,) = beacon.beacon(config)
    assert sorted(event["certificates"]) == ["kube-proxy", "kubelet"]
    assert beacon.beacon(config) == []

    later = time.monotonic() + 61  # retry (60 s) passed: fired again for certificates still due
    monkeypatch.setattr(beacon.time, "monotonic", lambda: later)
    assert len(beacon.beacon(config)) == 1


def test_the_beacon_forgets_a_due_set_once_it_is_renewed(cluster):
    beacon, config = beacon_for(cluster, "worker01")
    path = config[4]["certificates"]["kubelet"]["cert"]
    original = open(path, "rb").read()  # noqa: SIM115
    reissue(path, ca_dir(cluster), days=9)
    assert len(beacon.beacon(config)) == 1
    with open(path, "wb") as fh:
        fh.write(original)
    assert beacon.beacon(config) == []
    reissue(path, ca_dir(cluster), days=9)  # due again later: a new event
    assert len(beacon.beacon(config)) == 1


def test_the_beacon_leaves_no_shared_core_in_the_minions_main_process(cluster):
    # the execution module the beacon calls imports kubesalt in the process the beacon runs in -- the minion's main
    # process, which every job is forked from: left there, a kubesalt synced later would never reach a job
    beacon, config = beacon_for(cluster, "worker01")
    assert beacon.beacon(config) == []
    assert _shared_core() == {}
    reissue(config[4]["certificates"]["kubelet"]["cert"], ca_dir(cluster), days=9)
    assert len(beacon.beacon(config)) == 1
    assert _shared_core() == {}


@pytest.mark.parametrize(
    "config, why",
    [
        ({"interval": 60}, "must be a list of mappings"),
        ([{"interval": 0}, {"certificates": {}}], "interval 0 is not a whole number"),
        ([{"retry": "1h"}, {"certificates": {}}], "retry '1h' is not a whole number"),
        ([{"renew_days": True}, {"certificates": {}}], "renew_days True is not a whole number"),
        ([{"interval": 60}], "certificates must map each identity"),
        ([{"certificates": {"kubelet": {"cert": "relative.crt"}}}], "certificates must map each identity"),
    ],
)
def test_the_beacon_refuses_a_bad_configuration_naming_it(config, why):
    valid, comment = load("k8s_certs", "beacons").validate(config)
    assert valid is False and why in comment


# --------------------------------------------------------------------------------------------------------------------
# k8s_ops.renew
# --------------------------------------------------------------------------------------------------------------------
def service(name, *certificates):
    """A service.running chunk as k8s/macros.jinja renders it (see tests/integration/test_renewal_by_reactor.py for the
    real lowstate)."""
    watch = [{"file": f"{name} systemd unit"}] + [{"k8s_pki": f"{c} certificate"} for c in certificates]
    return {"state": "service", "fun": "running", "name": name, "__id__": f"{name} service", "watch": watch}


LOWSTATE = [
    {"state": "k8s_pki", "fun": "certificate_managed", "name": "/x/kubelet.crt", "__id__": "kubelet certificate"},
    service("etcd", "etcd-server", "etcd-peer"),
    service("kube-apiserver", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client", "front-proxy-client"),
    service("kube-controller-manager", "kube-controller-manager"),
    service("kube-scheduler", "kube-scheduler"),
    service("kubelet", "kubelet"),
    service("kube-proxy", "kube-proxy"),
]


def test_restarts_are_the_services_watching_a_renewed_certificate_in_highstate_order():
    ops = load("k8s_ops")
    assert ops.restarts_for(["kubelet", "apiserver-etcd-client"], LOWSTATE) == ["kube-apiserver", "kubelet"]
    assert ops.restarts_for(["admin", "etcd-healthcheck-client"], LOWSTATE) == []
    assert ops.restarts_for(["etcd-peer", "etcd-server"], LOWSTATE) == ["etcd"]


class Node:
    """k8s_ops on one minion of the harness, its Salt functions real where they can be here: k8s_pki (real
    certificates), state.sls k8s.pki (the real certificate_managed state of every certificate the node holds),
    k8s_etcd.lock/unlock (a real etcd). Recorded only: service.restart and the health waits."""

    def __init__(self, cluster, minion, etcd=None, fail_restart=None):
        self.cluster, self.minion, self.done = cluster, minion, []
        self.fail_restart = fail_restart
        pki = pki_for(cluster, minion)
        etcd_mod = load("k8s_etcd", opts={"id": minion, "test": False})
        salt = {
            "k8s.config": lambda validate=False: cluster.config(minion),
            "k8s_pki.expectations": pki.expectations,
            "k8s_pki.check": pki.check,
            "state.sls": self.state_sls,
            "state.show_lowstate": lambda queue=False: LOWSTATE,
            "service.restart": self.restart,
            "service.status": lambda name: True,
            "k8s_kube.wait_ready": lambda config: self.done.append("wait apiserver ready"),
            "k8s_kube.wait_node_ready": lambda config, name: self.done.append(f"wait node {name} Ready"),
            "k8s_etcd.connection_defaults": lambda config, identity=None: {},
            "k8s_etcd.cluster_health": lambda **conn: {"quorum": True, "healthy": [minion]},
        }
        if etcd is not None:
            salt["k8s_etcd.lock"] = functools.partial(etcd_mod.lock, **etcd.conn())
            salt["k8s_etcd.unlock"] = functools.partial(etcd_mod.unlock, **etcd.conn())
        self.ops = load("k8s_ops", salt=salt, opts={"id": minion, "test": False})

    def state_sls(self, mods, test=False, queue=False):
        assert mods == "k8s.pki" and queue is True
        self.done.append("state.sls k8s.pki" + (" test" if test else ""))
        run = {}
        for identity in self.cluster.execution(self.minion).entitlements(self.cluster.config(self.minion), self.minion):
            ret = self.cluster.issue(self.minion, identity, test=test)
            run[f"k8s_pki_|-{identity} certificate_|-{ret['name']}_|-certificate_managed"] = dict(
                ret, __id__=f"{identity} certificate"
            )
        return run

    def restart(self, name):
        self.done.append(f"restart {name}")
        return name != self.fail_restart


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    with etcd_cluster.running(tmp_path_factory.mktemp("etcd-renewal"), size=1) as running:
        yield running


def test_renew_with_nothing_due_applies_nothing(cluster):
    node = Node(cluster, "worker01")
    result = node.ops.renew()
    assert result["renewed"] == [] and result["due"] == {} and node.done == []
    assert "nothing done" in result["comment"]


def test_renew_on_a_worker_renews_what_is_due_and_restarts_only_its_service(cluster):
    node = Node(cluster, "worker01")
    crt = cluster.files("worker01", "kubelet")["cert"]
    proxy_before = cluster.files("worker01", "kube-proxy")["cert"].read_bytes()
    reissue(crt, ca_dir(cluster), days=9)
    result = node.ops.renew()
    assert result["renewed"] == ["kubelet"] and result["restarted"] == ["kubelet"], result
    assert node.done == ["state.sls k8s.pki", "restart kubelet", "wait node worker01 Ready"]
    assert result["lock"] is None  # a worker restarts on its own
    assert pki_for(cluster, "worker01").certificate_info(str(crt))["days_left"] >= 364
    assert cluster.files("worker01", "kube-proxy")["cert"].read_bytes() == proxy_before
    assert node.ops.renew()["renewed"] == []  # idempotent


def test_renew_in_test_mode_says_what_it_would_do_and_does_nothing(cluster):
    node = Node(cluster, "worker01")
    crt = cluster.files("worker01", "kubelet")["cert"]
    reissue(crt, ca_dir(cluster), days=9)
    before = crt.read_bytes()
    result = node.ops.renew(test=True)
    assert result["renewed"] == ["kubelet"] and result["would_restart"] == ["kubelet"] and result["restarted"] == []
    assert node.done == ["state.sls k8s.pki test"] and crt.read_bytes() == before


def test_a_master_restarts_under_the_etcd_lock_and_releases_it(cluster, etcd):
    node = Node(cluster, "master02", etcd=etcd)
    reissue(cluster.files("master02", "apiserver")["cert"], ca_dir(cluster), days=9)
    result = node.ops.renew()
    assert result["renewed"] == ["apiserver"] and result["restarted"] == ["kube-apiserver"], result
    assert node.done == ["state.sls k8s.pki", "restart kube-apiserver", "wait apiserver ready"]
    assert result["lock"]["name"] == "/kubesalt/locks/certificate-renewal"
    (step,) = result["timeline"]
    assert step["unit"] == "kube-apiserver" and step["restarted_at"].endswith("Z") and step["ready_after"] >= 0
    assert load("k8s_etcd").get("/kubesalt/locks/certificate-renewal", **etcd.conn()) is None  # released


def test_a_master_waits_while_another_master_holds_the_lock(cluster, etcd):
    cluster.pillar["pki"]["renewal"] = {"lock_ttl": 20}
    etcd_mod = load("k8s_etcd")
    held = etcd_mod.lock("/kubesalt/locks/certificate-renewal", holder="master01", ttl=3, wait=0, **etcd.conn())
    node = Node(cluster, "master02", etcd=etcd)
    reissue(cluster.files("master02", "kube-scheduler")["cert"], ca_dir(cluster), days=9)
    started = time.monotonic()
    result = node.ops.renew()
    assert result["restarted"] == ["kube-scheduler"], result
    assert time.monotonic() - started >= 2 and result["lock"]["waited"] >= 2  # master01's lease had to end first
    etcd_mod.unlock(held["lease"], **etcd.conn())


def test_a_failed_restart_still_releases_the_lock_and_says_what_happened(cluster, etcd):
    node = Node(cluster, "master02", etcd=etcd, fail_restart="kube-apiserver")
    for identity in ("apiserver", "kube-scheduler"):
        reissue(cluster.files("master02", identity)["cert"], ca_dir(cluster), days=9)
    result = node.ops.renew()
    assert node.ops.__context__["retcode"] == 1
    assert result["renewed"] == ["apiserver", "kube-scheduler"]
    assert "restarted nothing, then kube-apiserver: systemd did not restart it" in result["comment"], result
    assert "restart kube-scheduler" not in node.done  # stopped at the first failure
    assert load("k8s_etcd").get("/kubesalt/locks/certificate-renewal", **etcd.conn()) is None


def test_renew_stops_before_any_restart_when_k8s_pki_fails(cluster):
    node = Node(cluster, "worker01")
    node.ops.__salt__["state.sls"] = lambda mods, test=False, queue=False: {
        "k8s_pki_|-kubelet certificate_|-x_|-certificate_managed": {
            "__id__": "kubelet certificate",
            "result": False,
            "comment": "the CA minion did not answer",
            "changes": {},
        }
    }
    reissue(cluster.files("worker01", "kubelet")["cert"], ca_dir(cluster), days=9)
    result = node.ops.renew()
    assert node.ops.__context__["retcode"] == 1 and result["restarted"] == []
    assert result["comment"] == "k8s.pki failed: kubelet certificate: the CA minion did not answer"


# --------------------------------------------------------------------------------------------------------------------
# The reactor
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def render(tmp_path_factory):
    return reactor.renderer("renew", reactor.master_opts(tmp_path_factory.mktemp("master")))


def test_a_due_event_asks_the_minion_of_the_tag_and_only_it(render):
    data = {"id": "master01", "certificates": {"apiserver": {"state": "expired"}}}
    states = render("salt/beacon/worker01/k8s_certs/due", data)
    (state,) = states.values()
    args = {k: v for item in state["local.k8s_ops.renew"] for k, v in item.items()}
    assert args == {"tgt": "worker01"}
    assert "master01" not in str(states) and "apiserver" not in str(states)


@pytest.mark.parametrize(
    "tag",
    [
        "salt/beacon/*/k8s_certs/due",
        "salt/beacon/Worker01/k8s_certs/due",
        "salt/beacon/worker01/k8s_certs/",
        "salt/beacon/worker01/k8s_certs/due/x",
        "salt/beacon/a/b/k8s_certs/due",
        "salt/beacon/worker01/other/due",
        "salt/minion/worker01/k8s_certs/due",
        "salt/beacon/worker 01/k8s_certs/due",
    ],
)
def test_anything_but_a_due_tag_with_a_valid_minion_id_does_nothing(render, tag):
    assert render(tag, {"id": "worker01"}) == {}


def test_the_master_config_maps_the_due_tag_to_the_reactor():
    conf = salt.utils.yaml.safe_load((ROOT / "conf/master.d/kubesalt.conf").read_text())
    assert {"salt/beacon/*/k8s_certs/due": ["salt://k8s/reactor/renew.sls"]} in conf["reactor"]
