"""Certificate renewal without a human, on a real salt-master and real minions: k8s.pki installs the k8s_certs beacon;
a certificate made near-expiry makes the beacon fire salt/beacon/<id>/k8s_certs/due on the master's bus, the
reactor of conf/master.d/kubesalt.conf runs k8s_ops.renew on that minion, and the renewed certificate is on disk --
nobody applies anything by hand. A forged event naming another minion renews nothing: the reactor asks only the
minion in the tag, which finds nothing due. (Restarts and the etcd lock need systemd: tests/lab/test_renewal.py.)"""

import json
import pathlib
import time

import pytest
import yaml
from cryptography import x509

from tests.integration.conftest import NODES, snapshot
from tests.support.loader import load
from tests.support.pki_fixtures import reissue

pytestmark = pytest.mark.integration
MASTER = "kubesalt-master"
INTERVAL = 1  # seconds between two beacon checks in this test (default 3600; see fast_beacon)


def days_left(path):
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return (cert.not_valid_after_utc - cert.not_valid_before_utc).days, cert.not_valid_after_utc


def wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def converged(apply_sls):
    for minion in NODES:
        run = apply_sls(minion, "k8s.pki")
        assert run.ok, run
    return True


@pytest.fixture
def fast_beacon(converged, pillar_override, apply_sls, salt_minions):
    """The beacon on worker01 checking every INTERVAL seconds (pillar k8s:pki:renewal:interval), put in place by
    k8s.pki itself; back to the defaults afterwards. (Salt counts a beacon's interval in minion loop_intervals,
    which salt-factories sets to 0.05 s while the beacons run once a second: INTERVAL 1 is a check every ~20 s.)"""
    pillar_override(f"k8s:\n  pki:\n    renewal:\n      interval: {INTERVAL}\n")
    run = apply_sls("worker01", "k8s.pki")
    assert run.ok, run
    assert "certificate renewal beacon" in {k.split("_|-")[1] for k in run.changed}, run
    yield
    pillar_override("{}\n")
    assert apply_sls("worker01", "k8s.pki").ok


def test_k8s_pki_installs_the_beacon_saved_in_the_minion_config_and_a_second_apply_changes_nothing(
    converged, apply_sls, salt_minions, salt_cli, node_root
):
    run = apply_sls("worker02", "k8s.pki")
    assert run.ok and run.changed == {}, run
    beacons = salt_cli.run("beacons.list", "return_yaml=False", minion_tgt="worker02").data
    config = beacons["k8s_certs"]
    assert config[:4] == [{"interval": 3600}, {"retry": 21600}, {"disable_during_state_run": True}, {"renew_days": 30}]
    # What the beacon judges the files by, without rendering the settings: worker02's entitlements, where they live.
    certificates = config[4]["certificates"]
    assert sorted(certificates) == ["kube-proxy", "kubelet"]
    assert certificates["kubelet"]["cn"] == "system:node:worker02"
    assert certificates["kubelet"]["cert"] == str(node_root("worker02") / "etc/kubernetes/pki/kubelet.crt")
    saved = pathlib.Path(salt_minions["worker02"].config_dir) / "minion.d" / "beacons.conf"
    assert yaml.safe_load(saved.read_text())["beacons"]["k8s_certs"] == beacons["k8s_certs"]


def test_test_mode_reports_a_beacon_change_and_makes_none(converged, apply_sls, salt_cli):
    run = apply_sls("worker02", "k8s.pki", test=True, pillar={"k8s": {"pki": {"renewal": {"interval": 60}}}})
    pending = {k.split("_|-")[1]: s for k, s in run.pending.items()}
    assert "certificate renewal beacon" in pending, run
    assert pending["certificate renewal beacon"]["changes"]["new"][0] == {"interval": 60}
    beacons = salt_cli.run("beacons.list", "return_yaml=False", minion_tgt="worker02").data
    assert beacons["k8s_certs"][0] == {"interval": 3600}


def test_a_near_expiry_certificate_is_renewed_by_the_beacon_and_the_reactor_alone(
    fast_beacon, node_root, event_listener
):
    crt = node_root("worker01") / "etc/kubernetes/pki/kubelet.crt"
    start = time.time()
    reissue(crt, node_root("master01") / "etc/kubernetes/pki/ca", days=9)
    assert days_left(crt)[0] < 320  # 300 days back, 9 ahead

    events = event_listener.wait_for_events(
        [
            (MASTER, "salt/beacon/worker01/k8s_certs/due"),
            (MASTER, "salt/job/*/new"),
            (MASTER, "salt/job/*/ret/worker01"),
        ],
        timeout=120,
        after_time=start,
    )
    due = [e for e in events.matches if e.tag == "salt/beacon/worker01/k8s_certs/due"]
    assert due, "the beacon did not fire"
    assert set(due[0].data["certificates"]) == {"kubelet"}
    assert due[0].data["certificates"]["kubelet"]["state"] == "renew"
    renewed = wait(lambda: days_left(crt)[0] > 300 and days_left(crt), 60, "the kubelet certificate renewed on disk")
    assert renewed[0] >= 364

    jobs = event_listener.get_events([(MASTER, "salt/job/*/new")], after_time=start)
    renew_jobs = [e for e in jobs if e.data.get("fun") == "k8s_ops.renew"]
    assert [e.data["tgt"] for e in renew_jobs] == ["worker01"], [(e.data["fun"], e.data["tgt"]) for e in renew_jobs]
    jid = renew_jobs[0].data["jid"]
    ret = wait(
        lambda: next(
            iter(event_listener.get_events([(MASTER, f"salt/job/{jid}/ret/worker01")], after_time=start)), None
        ),
        60,
        "k8s_ops.renew to return",
    )
    assert ret.data["return"]["renewed"] == ["kubelet"], ret.data
    assert ret.data["return"]["restarted"] == []  # no systemd here: k8s:manage_services is false
    fired = event_listener.get_events([(MASTER, "salt/beacon/worker01/k8s_certs/due")], after_time=start)
    assert len(fired) == 1, [e.data for e in fired]


@pytest.fixture(scope="module")
def highstates(converged, salt_cli, pillar_dir):
    """master01's and worker01's real highstate as low chunks, rendered as it is where kubesalt manages services
    (nothing is applied)."""
    override = pillar_dir / "override.sls"
    override.write_text("k8s:\n  manage_services: true\n")
    try:
        assert salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt="*").returncode == 0
        lowstates = {m: salt_cli.run("state.show_lowstate", minion_tgt=m).data for m in ("master01", "worker01")}
    finally:
        override.write_text("{}\n")
        assert salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt="*").returncode == 0
    for minion, chunks in lowstates.items():
        assert isinstance(chunks, list) and any(c.get("state") == "service" for c in chunks), (minion, chunks)
    return lowstates


@pytest.mark.parametrize(
    "minion, renewed, restarts",
    [
        ("master01", ["apiserver"], ["kube-apiserver"]),
        ("master01", ["etcd-peer", "kube-scheduler"], ["etcd", "kube-scheduler"]),
        ("master01", ["admin", "etcd-healthcheck-client"], []),
        ("master01", ["apiserver-etcd-client", "kubelet"], ["kube-apiserver", "kubelet"]),
        ("worker01", ["kube-proxy"], ["kube-proxy"]),
    ],
)
def test_the_restarts_for_a_renewed_certificate_are_those_its_highstate_watches_it_with(
    highstates, minion, renewed, restarts
):
    assert load("k8s_ops").restarts_for(renewed, highstates[minion]) == restarts


def test_a_forged_event_naming_another_minion_renews_nobody_else(converged, salt_cli, node_root, event_listener):
    """worker01 fires the beacon's tag for worker02, with data naming master01 and a certificate: the reactor asks
    worker02 (the tag's minion) and nobody else, and worker02 -- with nothing due -- changes nothing."""
    before = {m: snapshot(node_root(m)) for m in ("master01", "worker02")}
    start = time.time()
    forged = {"id": "master01", "certificates": {"apiserver": {"state": "expired", "reasons": ["forged"]}}}
    sent = salt_cli.run(
        "event.send", "salt/beacon/worker02/k8s_certs/due", f"data={json.dumps(forged)}", minion_tgt="worker01"
    )
    assert sent.data is True, sent
    events = event_listener.wait_for_events(
        [(MASTER, "salt/beacon/worker02/k8s_certs/due"), (MASTER, "salt/job/*/ret/worker02")],
        timeout=60,
        after_time=start,
    )
    assert events.found_all_events, events
    jobs = event_listener.get_events([(MASTER, "salt/job/*/new")], after_time=start)
    renew_jobs = [(e.data["fun"], e.data["tgt"]) for e in jobs if e.data.get("fun") == "k8s_ops.renew"]
    assert renew_jobs == [("k8s_ops.renew", "worker02")], renew_jobs
    answer = next(e for e in events.matches if e.tag.endswith("/ret/worker02")).data["return"]
    assert answer["renewed"] == [] and answer["due"] == {} and "nothing done" in answer["comment"], answer
    assert {m: snapshot(node_root(m)) for m in before} == before
