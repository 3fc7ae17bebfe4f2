"""k8s_etcd.lock / unlock against a real etcd with mutual TLS (tests/support/etcd_cluster.py): one holder at a time,
the others wait and are told who holds it, and a holder that disappears loses the lock when its lease ends."""

import threading
import time

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support import etcd_cluster
from tests.support.loader import load


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with etcd_cluster.running(tmp_path_factory.mktemp("etcd-lock"), size=1) as running:
        yield running


@pytest.fixture(scope="module")
def etcd():
    return load("k8s_etcd", opts={"id": "master01", "test": False})


@pytest.fixture
def name(request):
    return f"/kubesalt-test/locks/{request.node.name}"


def test_a_second_holder_is_refused_naming_the_first_until_it_unlocks(etcd, cluster, name):
    first = etcd.lock(name, purpose="certificate renewal", ttl=60, wait=0, **cluster.conn())
    assert first["holder"] == "master01" and first["waited"] < 2  # no wait: only the requests themselves
    with pytest.raises(CommandExecutionError, match=r"held by master01 since .* \(certificate renewal\)"):
        etcd.lock(name, holder="master02", ttl=60, wait=0, **cluster.conn())
    assert etcd.unlock(first["lease"], **cluster.conn()) is True
    assert etcd.get(name, **cluster.conn()) is None  # revoking the lease deleted the key
    second = etcd.lock(name, holder="master02", ttl=60, wait=0, **cluster.conn())
    assert second["holder"] == "master02"
    etcd.unlock(second["lease"], **cluster.conn())


def test_racing_holders_take_the_lock_one_after_the_other(etcd, cluster, name):
    spans, errors = {}, []

    def hold(holder):
        try:
            taken = etcd.lock(name, holder=holder, ttl=60, wait=30, **cluster.conn())
            start = time.monotonic()
            time.sleep(1.0)
            spans[holder] = (start, time.monotonic())
            etcd.unlock(taken["lease"], **cluster.conn())
        except Exception as exc:  # reported below, with the holder
            errors.append((holder, exc))

    threads = [threading.Thread(target=hold, args=(f"master0{i}",)) for i in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    ordered = sorted(spans.values())
    assert len(ordered) == 3
    for (_, end), (start, _) in zip(ordered, ordered[1:], strict=False):
        assert start >= end, f"two holders at once: {spans}"


def test_a_holder_that_never_unlocks_loses_the_lock_when_its_lease_ends(etcd, cluster, name):
    etcd.lock(name, holder="master01", ttl=2, wait=0, **cluster.conn())
    taken = etcd.lock(name, holder="master02", ttl=60, wait=20, **cluster.conn())
    assert taken["holder"] == "master02" and 0.5 < taken["waited"] < 15, taken
    etcd.unlock(taken["lease"], **cluster.conn())


def test_unlocking_an_ended_lease_says_so(etcd, cluster, name):
    taken = etcd.lock(name, ttl=1, wait=0, **cluster.conn())
    time.sleep(2.5)
    assert etcd.unlock(taken["lease"], **cluster.conn()) is False


@pytest.mark.parametrize("bad", [{"ttl": 0}, {"wait": -1}, {"ttl": "ten"}, {"ttl": True}])
def test_bad_durations_are_refused_before_anything_is_written(etcd, cluster, name, bad):
    with pytest.raises(SaltInvocationError, match="not a number of seconds"):
        etcd.lock(name, **bad, **cluster.conn())
    assert etcd.get(name, **cluster.conn()) is None
