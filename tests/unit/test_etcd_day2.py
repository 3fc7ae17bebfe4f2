"""Day-2 etcd operations against REAL etcd clusters with mutual TLS on 127.0.0.1 (tests/support/etcd_cluster.py):
snapshots streamed from /v3/maintenance/snapshot and checked without etcd, retention, restore with the real etcdctl /
etcdutl into a new cluster, members joining as learners with the first-start settings k8s.etcd would give them,
removal refused when it would lose quorum, a dead member replaced. No mocks."""

import os
import pathlib
import shutil
import stat
import subprocess

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import etcd as kubesalt_etcd
from kubesalt import snapshot
from tests.support import etcd_cluster
from tests.support.loader import load

ETCDCTL = shutil.which("etcdctl")


@pytest.fixture(scope="module")
def etcd():
    return load("k8s_etcd")


def conn_of(cluster, *names):
    """Connection arguments that talk to the given members only."""
    return cluster.conn(endpoints=[cluster.members[n].client_url for n in names])


def fill(etcd, cluster, prefix, count=20):
    for index in range(count):
        etcd.put(f"{prefix}/{index:03d}", f"value-{index}", **cluster.conn())


def join(etcd, cluster, name, via):
    """Join a new member the way k8s.etcd does: decide its first start, add it as a learner, start it, promote it."""
    member = cluster.members[name]
    facts = etcd.decide_initial_cluster(
        name,
        member.peer_url,
        cluster.inventory,
        etcd.member_list(**conn_of(cluster, *via)),
        etcd.cluster_health(**conn_of(cluster, *via)),
    )
    assert facts["state"] == "existing" and facts["join"] is True
    added = etcd.member_add(member.peer_url, **conn_of(cluster, *via))
    assert added["added"] is True and added["is_learner"] is True
    cluster.start_member(name, wait=False, state=facts["state"], initial_cluster=facts["initial_cluster"])
    promoted = etcd.member_promote(member.peer_url, wait=60, **conn_of(cluster, *via))
    assert promoted["promoted"] is True
    cluster.wait_healthy([name])
    return facts


# --------------------------------------------------------------------------------------------------------------------
# Snapshots
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def single(tmp_path_factory):
    with etcd_cluster.running(tmp_path_factory.mktemp("etcd-single"), size=1) as running:
        yield running


def test_backup_writes_a_verified_0600_snapshot_in_a_0700_directory(etcd, single, tmp_path):
    fill(etcd, single, "/backup-test")
    before = int(etcd.endpoint_status(**single.conn())[single.endpoints[0]]["raft_index"] or 0)
    result = etcd.backup(directory=str(tmp_path / "snaps"), keep=3, **single.conn())
    path = result["path"]
    assert os.path.basename(path).startswith("etcd-snapshot-") and path.endswith(".db")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "snaps").st_mode) == 0o700
    assert result["revision"] >= 21 and result["revisions"] >= 20 and before >= 0
    assert os.listdir(tmp_path / "snaps") == [os.path.basename(path)]  # no temporary file left behind


@pytest.mark.skipif(not ETCDCTL, reason="etcdctl not installed")
def test_the_snapshot_revision_is_the_one_etcdctl_reads(etcd, single, tmp_path):
    result = etcd.backup(directory=str(tmp_path), keep=1, **single.conn())
    status = subprocess.run(
        [ETCDCTL, "snapshot", "status", result["path"], "-w", "json"],
        capture_output=True,
        text=True,
        env={"ETCDCTL_API": "3", "PATH": os.environ["PATH"]},
        check=True,
    )
    assert f'"revision":{result["revision"]},' in status.stdout


def test_retention_keeps_the_newest_snapshots_and_copy_to_gets_each_new_one(etcd, single, tmp_path):
    taken = [
        etcd.backup(directory=str(tmp_path / "a"), keep=2, copy_to=str(tmp_path / "off"), **single.conn())
        for _ in range(3)
    ]
    kept = [s["path"] for s in etcd.snapshots(str(tmp_path / "a"))]
    assert kept == [taken[2]["path"], taken[1]["path"]]
    assert taken[2]["removed"] == [taken[0]["path"], str(tmp_path / "off" / os.path.basename(taken[0]["path"]))]
    copies = sorted(os.listdir(tmp_path / "off"))
    assert copies == sorted(os.path.basename(p) for p in kept)
    assert all(stat.S_IMODE(os.stat(tmp_path / "off" / c).st_mode) == 0o600 for c in copies)


def test_a_truncated_or_altered_snapshot_is_refused(etcd, single, tmp_path):
    good = etcd.backup(directory=str(tmp_path), keep=1, **single.conn())["path"]
    data = pathlib.Path(good).read_bytes()
    cut = tmp_path / "cut.db"
    cut.write_bytes(data[: len(data) // 2])
    flipped = tmp_path / "flipped.db"
    flipped.write_bytes(data[:5000] + bytes([data[5000] ^ 1]) + data[5001:])
    bare = tmp_path / "bare.db"
    bare.write_bytes(data[:-32])
    for path in (cut, flipped, bare):
        with pytest.raises(CommandExecutionError, match="SHA-256 trailer does not match"):
            etcd.verify_snapshot(str(path))
    with pytest.raises(CommandExecutionError, match="older than the cluster's"):
        etcd.verify_snapshot(good, min_revision=10**9)


def test_a_snapshot_with_a_cleartext_secret_is_not_kept(etcd, single, tmp_path):
    etcd.put("/registry/secrets/default/encrypted", "k8s:enc:secretbox:v1:key1:opaque", **single.conn())
    ok = etcd.verify_snapshot(etcd.backup(directory=str(tmp_path), keep=5, **single.conn())["path"])
    assert ok["secrets"] >= 1 and ok["secrets_encrypted"] == ok["secrets"]
    etcd.put("/registry/secrets/default/plain", "k8s\x00plaintext-protobuf", **single.conn())
    try:
        with pytest.raises(
            CommandExecutionError, match=r"1 Secret\(s\) in cleartext \(/registry/secrets/default/plain"
        ):
            etcd.backup(directory=str(tmp_path), keep=5, **single.conn())
        assert len(etcd.snapshots(str(tmp_path))) == 1  # the refused snapshot was never put in place
        assert [n for n in os.listdir(tmp_path) if not n.endswith(".db")] == []
    finally:
        etcd.delete("/registry/secrets/", prefix=True, **single.conn())
        compact(etcd, single)  # the cleartext revision stays in etcd's history until a compaction
    # after the compaction no cleartext revision is left, and the snapshot's revision counts the compaction
    taken = etcd.backup(directory=str(tmp_path), keep=5, **single.conn())
    assert taken["secrets"] == 0 and taken["compact_revision"] >= taken["revision"]


def compact(etcd, cluster):
    """Compact the cluster's history up to its current revision, as the API server does every 5 minutes."""
    with kubesalt_etcd.EtcdClient(**cluster.conn()) as client:
        client.request("/v3/kv/compaction", {"revision": str(client.revision()), "physical": True}, write=True)


def test_backup_refuses_keep_below_one_and_a_relative_directory(etcd, single, tmp_path):
    with pytest.raises(SaltInvocationError, match="keep 0 must be at least 1"):
        etcd.backup(directory=str(tmp_path), keep=0, **single.conn())
    with pytest.raises(SaltInvocationError, match="must be an absolute path"):
        etcd.backup(directory="relative/dir", keep=1, **single.conn())
    assert os.listdir(tmp_path) == []


def test_snapshot_reader_refuses_a_file_that_is_not_a_database(tmp_path):
    import hashlib

    body = b"\0" * 8192
    path = tmp_path / "zeros.db"
    path.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(snapshot.SnapshotError, match="no valid bbolt meta page"):
        snapshot.inspect(str(path))


# --------------------------------------------------------------------------------------------------------------------
# Membership
# --------------------------------------------------------------------------------------------------------------------
def test_first_start_decisions_from_what_the_cluster_answers(etcd):
    inventory = {"m1": "https://10.0.0.1:2380", "m2": "https://10.0.0.2:2380"}
    me = inventory["m2"]
    assert etcd.decide_initial_cluster("m2", me, inventory) == {
        "state": "new",
        "initial_cluster": inventory,
        "join": False,
        "promote_first": [],
    }
    with pytest.raises(CommandExecutionError, match="cleared for a restore"):
        etcd.decide_initial_cluster("m2", me, inventory, restoring=True)
    booting = [
        {"id": "1", "name": "m1", "peer_urls": [inventory["m1"]], "client_urls": ["x"], "is_learner": False},
        {"id": "2", "name": "", "peer_urls": [me], "client_urls": [], "is_learner": False},
    ]
    no_quorum = {"quorum": False, "healthy": [], "unhealthy": ["m1"], "learners": []}
    assert etcd.decide_initial_cluster("m2", me, inventory, booting, no_quorum)["state"] == "new"
    healthy = {"quorum": True, "healthy": ["m1"], "unhealthy": [], "learners": []}
    assert etcd.decide_initial_cluster("m2", me, inventory, booting, healthy) == {
        "state": "existing",
        "initial_cluster": inventory,
        "join": False,
        "promote_first": [],
    }
    started = [booting[0], dict(booting[1], name="m2", client_urls=["https://10.0.0.2:2379"])]
    with pytest.raises(CommandExecutionError, match="registered and started .* replace it"):
        etcd.decide_initial_cluster("m2", me, inventory, started, healthy)
    other = [booting[0], {"id": "3", "name": "", "peer_urls": ["https://10.0.0.3:2380"], "client_urls": []}]
    with pytest.raises(CommandExecutionError, match="added but has not started yet"):
        etcd.decide_initial_cluster("m2", me, inventory, other, healthy)


def test_removal_problem_counts_only_voting_members(etcd):
    report = {"healthy": ["a", "b"], "unhealthy": ["c"], "learners": ["d"], "quorum": True}
    assert etcd.removal_problem(report, "c") is None  # the dead one may go: a, b remain healthy
    assert etcd.removal_problem(report, "d") is None  # a learner has no vote
    assert "would lose quorum" in etcd.removal_problem(report, "a")  # b healthy, c dead: 1 of 2
    assert "last voting member" in etcd.removal_problem({"healthy": ["a"], "unhealthy": [], "learners": []}, "a")


def test_grow_from_one_member_to_three_as_learners_while_writes_go_on(etcd, tmp_path):
    cluster = etcd_cluster.EtcdCluster(tmp_path, size=1)
    try:
        cluster.start()
        fill(etcd, cluster, "/grow", 10)
        for name in ("etcd2", "etcd3"):
            cluster.add_member(name)
            facts = join(etcd, cluster, name, via=["etcd1"])
            assert set(facts["initial_cluster"]) == set(cluster.inventory)
            etcd.put(f"/grow/after-{name}", "ok", **conn_of(cluster, "etcd1"))  # writes never stopped
        members = etcd.member_list(**cluster.conn())
        assert sorted(m["name"] for m in members) == ["etcd1", "etcd2", "etcd3"]
        assert not any(m["is_learner"] for m in members)
        health = etcd.cluster_health(**cluster.conn())
        assert health["quorum"] and sorted(health["healthy"]) == ["etcd1", "etcd2", "etcd3"]
        assert etcd.get("/grow/005", **conn_of(cluster, "etcd3")) == "value-5"  # the new member holds the data
        # a second add of the same peer URL changes nothing
        assert etcd.member_add(cluster.members["etcd3"].peer_url, **cluster.conn())["added"] is False
    finally:
        cluster.stop()


def test_remove_is_refused_when_it_would_lose_quorum_and_done_otherwise(etcd, tmp_path):
    with etcd_cluster.running(tmp_path, size=3) as cluster:
        cluster.stop_member("etcd3")
        with pytest.raises(CommandExecutionError, match="removing etcd2 would lose quorum"):
            etcd.member_remove("etcd2", **cluster.conn())
        assert len(etcd.member_list(**cluster.conn())) == 3
        removed = etcd.member_remove("etcd3", **cluster.conn())
        assert removed["removed"] is True and removed["member"]["name"] == "etcd3"
        assert sorted(m["name"] for m in etcd.member_list(**cluster.conn())) == ["etcd1", "etcd2"]
        assert etcd.member_remove("etcd3", **cluster.conn()) == {"removed": False, "member": None}
        etcd.put("/after-removal", "ok", **cluster.conn())
        with pytest.raises(CommandExecutionError, match="would lose quorum"):
            cluster.stop_member("etcd2")
            etcd.member_remove("etcd1", **conn_of(cluster, "etcd1"))


def test_replace_a_dead_member_on_a_new_empty_disk(etcd, tmp_path):
    with etcd_cluster.running(tmp_path, size=3) as cluster:
        fill(etcd, cluster, "/replace", 10)
        cluster.stop_member("etcd3")
        moved = etcd.move_aside(str(cluster.data_dirs["etcd3"]), "failed")  # the disk is gone
        assert moved and os.path.isdir(moved) and not cluster.data_dirs["etcd3"].exists()
        # with the dead member still registered and started, an empty disk must not just start: replace it
        with pytest.raises(CommandExecutionError, match="registered and started"):
            etcd.decide_initial_cluster(
                "etcd3",
                cluster.members["etcd3"].peer_url,
                cluster.inventory,
                etcd.member_list(**conn_of(cluster, "etcd1")),
                etcd.cluster_health(**conn_of(cluster, "etcd1")),
            )
        assert etcd.member_remove("etcd3", **conn_of(cluster, "etcd1", "etcd2"))["removed"] is True
        join(etcd, cluster, "etcd3", via=["etcd1", "etcd2"])
        assert etcd.get("/replace/009", **conn_of(cluster, "etcd3")) == "value-9"
        assert sorted(etcd.cluster_health(**cluster.conn())["healthy"]) == ["etcd1", "etcd2", "etcd3"]


# --------------------------------------------------------------------------------------------------------------------
# Restore
# --------------------------------------------------------------------------------------------------------------------
def test_restore_into_a_new_cluster_keeps_every_key(etcd, tmp_path):
    with etcd_cluster.running(tmp_path / "old", size=3) as old:
        fill(etcd, old, "/restore", 30)
        taken = etcd.backup(directory=str(tmp_path / "snaps"), keep=1, **conn_of(old, "etcd2"))
        etcd.put("/restore/written-after-the-snapshot", "gone after restore", **old.conn())
    new = etcd_cluster.EtcdCluster(tmp_path / "new", size=1, token="kubesalt-restored")
    try:
        seed = new.members["etcd1"]
        seed.dir.joinpath("data").mkdir()
        (seed.dir / "data" / "left-over").write_text("the data directory before the restore")
        result = etcd.restore(taken["path"], str(seed.dir / "data"), "etcd1", seed.peer_url, new.token)
        assert result["revision"] == taken["revision"]
        assert os.path.exists(os.path.join(result["moved_aside"], "left-over"))  # moved aside, never deleted
        assert etcd.holds_member(str(seed.dir / "data"))
        new.start_member("etcd1")
        assert etcd.ls("/restore/", **new.conn()) == {f"/restore/{i:03d}": f"value-{i}" for i in range(30)}
        # the other members join the restored one
        new.add_member("etcd2")
        join(etcd, new, "etcd2", via=["etcd1"])
        assert etcd.get("/restore/029", **conn_of(new, "etcd2")) == "value-29"
        assert [m["name"] for m in etcd.member_list(**new.conn())].count("etcd1") == 1
    finally:
        new.stop()


def test_restore_refuses_a_damaged_snapshot_and_leaves_the_data_directory(etcd, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"x" * 4096)
    with pytest.raises(CommandExecutionError, match="not usable"):
        etcd.restore(str(broken), str(data), "m1", "https://127.0.0.1:2380", "t")
    assert data.is_dir() and sorted(os.listdir(tmp_path)) == ["broken.db", "data"]


# --------------------------------------------------------------------------------------------------------------------
# States: test=True changes nothing and says what would change; a second run changes nothing
# --------------------------------------------------------------------------------------------------------------------
STATE_FUNCTIONS = (
    "get",
    "snapshots",
    "backup",
    "member_list",
    "find_member",
    "member_add",
    "member_remove",
    "member_promote",
    "cluster_health",
    "removal_problem",
    "holds_member",
    "verify_snapshot",
    "restore_tool",
    "resolve_snapshot",
    "restore",
    "move_aside",
)


def states(etcd, test=False):
    salt = {f"k8s_etcd.{name}": getattr(etcd, name) for name in STATE_FUNCTIONS}
    return load("k8s_etcd", kind="states", salt=salt, opts={"test": test, "id": "unit"})


def test_snapshot_present_takes_one_then_none_while_the_newest_is_young(etcd, single, tmp_path):
    directory = str(tmp_path / "snaps")
    dry = states(etcd, test=True).snapshot_present(directory, keep=2, max_age=3600, **single.conn())
    assert dry["result"] is None and dry["changes"] and "there is none" in dry["comment"]
    assert not os.path.exists(directory)
    first = states(etcd).snapshot_present(directory, keep=2, max_age=3600, **single.conn())
    assert first["result"] is True and first["changes"]["snapshot"].startswith(directory)
    again = states(etcd).snapshot_present(directory, keep=2, max_age=3600, **single.conn())
    assert again["result"] is True and again["changes"] == {}
    assert states(etcd, test=True).snapshot_present(directory, keep=2, max_age=3600, **single.conn())["changes"] == {}
    old = states(etcd).snapshot_present(directory, keep=2, max_age=0.001, **single.conn())
    assert old["changes"]["snapshot"] != first["changes"]["snapshot"] and len(etcd.snapshots(directory)) == 2


def test_a_member_late_to_the_first_bootstrap_starts_into_it(etcd, tmp_path):
    # k8s.etcd starts every member in parallel; when two of three formed quorum before the third asked, the third
    # is listed by its bootstrap name without client URLs: not started, so it must start, not be sent to "replace"
    cluster = etcd_cluster.EtcdCluster(tmp_path, size=3)
    try:
        for name in ("etcd1", "etcd2"):
            cluster.start_member(name, wait=False)
        cluster.wait_healthy(["etcd1", "etcd2"])
        late = cluster.members["etcd3"]
        conn = conn_of(cluster, "etcd1", "etcd2")
        members = etcd.member_list(**conn)
        assert etcd.find_member(members, late.peer_url)["name"] == "etcd3"  # named, yet never started
        facts = etcd.decide_initial_cluster(
            "etcd3", late.peer_url, cluster.inventory, members, etcd.cluster_health(**conn)
        )
        assert facts == {"state": "existing", "initial_cluster": cluster.inventory, "join": False, "promote_first": []}
        cluster.start_member("etcd3", state=facts["state"], initial_cluster=facts["initial_cluster"])
        assert etcd.cluster_health(**cluster.conn())["healthy"] == ["etcd1", "etcd2", "etcd3"]
        started = etcd.member_list(**cluster.conn())
        with pytest.raises(CommandExecutionError, match="registered and started .* replace it"):
            etcd.decide_initial_cluster("etcd3", late.peer_url, cluster.inventory, started, {"quorum": True})
    finally:
        cluster.stop()


def test_a_learner_left_by_an_interrupted_join_is_promoted_before_the_next_member_is_added(etcd, tmp_path):
    cluster = etcd_cluster.EtcdCluster(tmp_path, size=1)
    try:
        cluster.start()
        second, third = cluster.add_member("etcd2"), cluster.add_member("etcd3")
        conn = conn_of(cluster, "etcd1")
        etcd.member_add(second.peer_url, **conn)
        cluster.start_member(
            "etcd2",
            state="existing",
            initial_cluster={"etcd1": cluster.members["etcd1"].peer_url, "etcd2": second.peer_url},
        )
        # the join stopped here: etcd2 runs as a learner; etcd takes no second learner
        with pytest.raises(CommandExecutionError, match="too many learner members"):
            etcd.member_add(third.peer_url, wait=0, **conn)
        facts = etcd.decide_initial_cluster(
            "etcd3", third.peer_url, cluster.inventory, etcd.member_list(**conn), etcd.cluster_health(**conn)
        )
        assert facts["join"] is True and facts["promote_first"] == ["etcd2"]
        added = etcd.member_add(third.peer_url, wait=60, promote_first=facts["promote_first"], **conn)
        assert added["added"] is True and added["is_learner"] is True
        voting = {m["name"]: m["is_learner"] for m in etcd.member_list(**conn)}
        assert voting == {"etcd1": False, "etcd2": False, "": True}
        # the orchestration's check after the joins: etcd3 is not there yet, and it says so
        peers = {n: m.peer_url for n, m in cluster.members.items()}
        assert etcd.not_voting(members=etcd.member_list(**conn), peers=peers) == {"etcd3": "added but not started"}
        check_states = states(etcd)
        check_states.__salt__["k8s_etcd.not_voting"] = lambda config, members: etcd.not_voting(config, members, peers)
        config = {"cluster": {"etcd_members": sorted(peers)}}
        check = check_states.members_voting("etcd membership", config=config, wait=0, **conn)
        assert check["result"] is False and "etcd3: added but not started" in check["comment"], check
    finally:
        cluster.stop()


def test_the_leader_hands_over_its_leadership_before_it_is_removed(etcd, tmp_path):
    with etcd_cluster.running(tmp_path, size=3) as cluster:
        statuses = etcd.endpoint_status(**cluster.conn())
        leader = next(name for name, m in cluster.members.items() if statuses[m.client_url].get("is_leader"))
        removed = etcd.member_remove(leader, **cluster.conn())
        assert removed["removed"] is True and removed["leadership_moved_to"] not in (None, leader), removed
        rest = [n for n in cluster.members if n != leader]
        after = etcd.endpoint_status(**conn_of(cluster, *rest))
        # no election: the member it handed over to leads, and both that remain agree
        assert after[cluster.members[removed["leadership_moved_to"]].client_url]["is_leader"] is True
        assert len({s["leader"] for s in after.values()}) == 1
        cluster.stop_member(leader)


def test_membership_states_promote_a_learner_and_remove_it(etcd, tmp_path):
    cluster = etcd_cluster.EtcdCluster(tmp_path, size=1)
    try:
        cluster.start()
        new = cluster.add_member("etcd2")
        conn = conn_of(cluster, "etcd1")
        facts = etcd.decide_initial_cluster(
            "etcd2", new.peer_url, cluster.inventory, etcd.member_list(**conn), etcd.cluster_health(**conn)
        )
        assert etcd.member_add(new.peer_url, **conn)["is_learner"] is True
        cluster.start_member("etcd2", wait=False, state=facts["state"], initial_cluster=facts["initial_cluster"])
        # a learner refuses its own promotion (k8s.etcd asks the other members: etcd_other_client_urls)
        cluster.wait_healthy(["etcd2"])
        with pytest.raises(CommandExecutionError, match="not supported for learner"):
            etcd.member_promote("etcd2", wait=0, **conn_of(cluster, "etcd2"))
        assert states(etcd, test=True).member_promoted("etcd2", new.peer_url, **conn)["result"] is None
        promoted = states(etcd).member_promoted("etcd2", new.peer_url, wait=60, **conn)
        assert promoted["result"] is True and promoted["changes"] == {"promoted": "etcd2"}
        assert states(etcd).member_promoted("etcd2", new.peer_url, **conn)["changes"] == {}
        cluster.wait_healthy(["etcd2"])
        check = states(etcd).member_absent("etcd2", remove=False, **conn)
        assert check["result"] is False and "still an etcd member" in check["comment"]
        replace = states(etcd).member_absent("etcd2", only_unhealthy=True, **conn)
        assert replace["result"] is False and "is healthy" in replace["comment"]
        dry = states(etcd, test=True).member_absent("etcd2", **conn)
        assert dry["result"] is None and dry["changes"]["removed"]["name"] == "etcd2"
        assert len(etcd.member_list(**conn)) == 2
        gone = states(etcd).member_absent("etcd2", **conn)
        assert gone["result"] is True and gone["changes"]["removed"]["name"] == "etcd2", gone
        assert states(etcd).member_absent("etcd2", **conn)["changes"] == {}
        last = states(etcd).member_absent("etcd1", **conn)
        assert last["result"] is False and "last voting member" in last["comment"] and last["changes"] == {}
    finally:
        cluster.stop()


def test_restore_states_restore_the_seed_once_and_clear_the_others_once(etcd, single, tmp_path):
    taken = etcd.backup(directory=str(tmp_path / "snaps"), keep=1, **single.conn())["path"]
    seed, other = tmp_path / "seed", tmp_path / "other"
    for data_dir in (seed, other):
        (data_dir / "member").mkdir(parents=True)
    args = {
        "snapshot": taken,
        "member": "m1",
        "peer_url": "https://127.0.0.1:2380",
        "token": "t",
        "marker": str(tmp_path / "seed.restore-pending"),
    }
    dry = states(etcd, test=True).data_restored(str(seed), **args)
    assert dry["result"] is None and dry["changes"]["moved_aside"] == str(seed)
    assert not os.path.exists(args["marker"]) and (seed / "member").is_dir()
    done = states(etcd).data_restored(str(seed), **args)
    assert done["result"] is True, done
    assert etcd.holds_member(str(seed)) and os.path.isdir(done["changes"]["moved_aside"])
    assert states(etcd).data_restored(str(seed), **args)["changes"] == {}  # resumed run: not restored again
    marker = str(tmp_path / "other.restore-pending")
    assert states(etcd, test=True).data_cleared(str(other), marker, taken)["result"] is None
    assert other.is_dir()
    cleared = states(etcd).data_cleared(str(other), marker, taken)
    assert cleared["result"] is True and not other.exists() and os.path.isdir(cleared["changes"]["moved_aside"])
    other.mkdir()  # the member joined the restored cluster meanwhile: its new data must stay
    assert states(etcd).data_cleared(str(other), marker, taken)["changes"] == {} and other.is_dir()
    assert oct(os.stat(marker).st_mode & 0o777) == "0o600"


def test_first_start_writes_the_decision_adds_a_joining_learner_then_changes_nothing(etcd, tmp_path):
    """The state k8s.etcd runs before a first start, on a real cluster: the decision comes from the real members
    (k8s_etcd.initial_cluster's own core), the learner is really added, and etcd starts from the file it wrote."""
    cluster = etcd_cluster.EtcdCluster(tmp_path / "c", size=1)
    try:
        cluster.start()
        new = cluster.add_member("etcd2")
        conn = conn_of(cluster, "etcd1")
        config = {
            "cluster": {
                "minion_id": "etcd2",
                "etcd_peer_url": new.peer_url,
                "etcd_client_urls": [cluster.members["etcd1"].client_url, new.client_url],
                "etcd_client_url": new.client_url,
                "etcd_other_client_urls": [cluster.members["etcd1"].client_url],
            },
            "etcd": {"health_timeout": 60},
        }
        tls = {k: conn[k] for k in ("ca", "cert", "key")}
        salt = {
            "k8s_etcd.initial_cluster": lambda config, ask=True: (
                None
                if etcd.holds_member(str(new.dir / "data"))
                else etcd.decide_initial_cluster(
                    "etcd2", new.peer_url, cluster.inventory, etcd.member_list(**conn), etcd.cluster_health(**conn)
                )
            ),
            "k8s_etcd.first_start_env": etcd.first_start_env,
            "k8s_etcd.member_add": lambda url, **kw: etcd.member_add(url, **dict(kw, **tls)),
        }
        module = load("k8s_etcd", kind="states", salt=salt, opts={"test": True, "id": "etcd2"})
        env = tmp_path / "etcd-first-start.env"
        dry = module.first_start(str(env), config=config)
        assert dry["result"] is None and dry["changes"]["state"] == "existing" and dry["changes"]["added"]
        assert not env.exists() and len(etcd.member_list(**conn)) == 1
        module.__opts__ = {"test": False, "id": "etcd2"}
        done = module.first_start(str(env), config=config)
        assert done["result"] is True and done["changes"]["added"]["learner"] is True, done
        assert oct(env.stat().st_mode & 0o777) == "0o600"
        assert [m["is_learner"] for m in etcd.member_list(**conn) if m["peer_urls"] == [new.peer_url]] == [True]
        assert module.first_start(str(env), config=config)["changes"] == {}  # added already, file as decided
        flags = [f for f in cluster._flags(new) if not f.startswith(("--initial-cluster=", "--initial-cluster-state"))]
        new.process = etcd_cluster.start_etcd(flags, new.log, env.read_text())
        etcd.member_promote(new.peer_url, wait=60, **conn)
        cluster.wait_healthy(["etcd2"])
        assert etcd.get("/", **conn_of(cluster, "etcd2")) is None
        after = module.first_start(str(env), config=config)
        assert after["changes"] == {} and "holds a member" in after["comment"]
    finally:
        cluster.stop()


def test_members_match_removes_the_members_the_inventory_lacks_one_at_a_time(etcd, tmp_path):
    with etcd_cluster.running(tmp_path, size=3) as cluster:
        conn = cluster.conn()
        salt = {f"k8s_etcd.{n}": getattr(etcd, n) for n in ("member_list", "cluster_health", "removal_problem")}
        salt["k8s_etcd.member_remove"] = etcd.member_remove
        wanted = {n: cluster.members[n].peer_url for n in ("etcd1",)}
        salt["k8s_etcd.members_to_remove"] = lambda config, members: [
            dict(m, label=m["name"] or m["id"]) for m in members if not set(m["peer_urls"]) & set(wanted.values())
        ]
        module = load("k8s_etcd", kind="states", salt=salt, opts={"test": True, "id": "unit"})
        dry = module.members_match("etcd membership", config={"cluster": {}}, **conn)
        assert dry["result"] is None and sorted(dry["changes"]["removed"]) == ["etcd2", "etcd3"]
        assert len(etcd.member_list(**conn)) == 3
        cluster.stop_member("etcd3")
        module.__opts__ = {"test": False, "id": "unit"}
        # only etcd2 is unwanted, but etcd3 is down: removing etcd2 would leave etcd1 and a dead etcd3
        wanted["etcd3"] = cluster.members["etcd3"].peer_url
        refused = module.members_match("etcd membership", config={"cluster": {}}, **conn)
        assert refused["result"] is False and "would lose quorum" in refused["comment"], refused
        assert refused["changes"] == {} and len(etcd.member_list(**conn)) == 3
        # neither is wanted: the dead one goes first, which makes removing etcd2 safe
        del wanted["etcd3"]
        done = module.members_match("etcd membership", config={"cluster": {}}, **conn)
        assert done["result"] is True and done["changes"] == {"removed": ["etcd3", "etcd2"]}, done
        assert [m["name"] for m in etcd.member_list(**conn)] == ["etcd1"]
        again = module.members_match("etcd membership", config={"cluster": {}}, **conn_of(cluster, "etcd1"))
        assert again["result"] is True and again["changes"] == {}


def test_snapshot_sound_names_the_snapshot_or_why_it_is_not(etcd, single, tmp_path):
    salt = {f"k8s_etcd.{n}": getattr(etcd, n) for n in ("resolve_snapshot", "verify_snapshot", "snapshots")}
    module = load("k8s_etcd", kind="states", salt=salt, opts={"test": False, "id": "unit"})
    missing = module.snapshot_sound("latest", str(tmp_path / "none"))
    assert missing["result"] is False and "holds no snapshot" in missing["comment"]
    taken = etcd.backup(directory=str(tmp_path / "snaps"), keep=1, **single.conn())
    good = module.snapshot_sound("latest", str(tmp_path / "snaps"))
    assert good["result"] is True and good["changes"] == {} and taken["sha256"] in good["comment"]
