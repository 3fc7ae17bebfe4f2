"""k8s_etcd execution functions and states against a real 3-member etcd cluster with mutual TLS on 127.0.0.1
(tests/support/etcd_cluster.py). No mocks: every call goes through the etcd JSON gateway over HTTPS."""

import threading
import time

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support import etcd_cluster
from tests.support.loader import load

PUBLIC = ("get", "put", "cas", "delete", "ls", "render_value", "same_value", "cluster_health")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with etcd_cluster.running(tmp_path_factory.mktemp("etcd")) as running:
        yield running


@pytest.fixture(scope="module")
def etcd():
    return load("k8s_etcd")


def salt_map(etcd):
    return {f"k8s_etcd.{name}": getattr(etcd, name) for name in PUBLIC}


def states(etcd, test=False, salt=None):
    return load("k8s_etcd", kind="states", salt=salt or salt_map(etcd), opts={"test": test, "id": "unit"})


def health_conn(cluster, request_timeout=None):
    """Connection arguments for the healthy state, whose own ``timeout`` is the whole wait."""
    conn = cluster.conn()
    conn.pop("timeout")
    if request_timeout:
        conn["request_timeout"] = request_timeout
    return conn


@pytest.fixture
def key(request):
    return f"/kubesalt-test/{request.node.name.replace('[', '-').rstrip(']')}"


# --------------------------------------------------------------------------------------------------------------------
# Key/value and compare-and-swap
# --------------------------------------------------------------------------------------------------------------------
def test_put_then_get_returns_the_value_and_its_revisions(etcd, cluster, key):
    written = etcd.put(key, "hello", **cluster.conn())
    entry = etcd.get(key, meta=True, **cluster.conn())
    assert etcd.get(key, **cluster.conn()) == "hello"
    assert entry["key"] == key and entry["value"] == "hello" and entry["version"] == 1
    assert entry["mod_revision"] == entry["create_revision"] == written["revision"]


def test_get_of_a_missing_key_returns_none(etcd, cluster, key):
    assert etcd.get(key, **cluster.conn()) is None


def test_ls_returns_only_the_keys_under_the_prefix(etcd, cluster, key):
    for suffix in ("/a", "/b/c", "x"):  # key + "x" shares the text but is outside the prefix key + "/"
        etcd.put(key + suffix, suffix, **cluster.conn())
    assert etcd.ls(key + "/", **cluster.conn()) == {key + "/a": "/a", key + "/b/c": "/b/c"}
    assert etcd.ls(key + "/", keys_only=True, **cluster.conn()) == [key + "/a", key + "/b/c"]


def test_delete_removes_a_key_or_a_whole_prefix(etcd, cluster, key):
    for suffix in ("/a", "/b", "/c"):
        etcd.put(key + suffix, "1", **cluster.conn())
    assert etcd.delete(key + "/a", **cluster.conn()) == 1
    assert etcd.delete(key + "/a", **cluster.conn()) == 0
    assert etcd.delete(key + "/", prefix=True, **cluster.conn()) == 2
    assert etcd.ls(key + "/", **cluster.conn()) == {}


def test_cas_create_only_succeeds_for_the_first_writer_only(etcd, cluster, key):
    first = etcd.cas(key, "one", create_only=True, **cluster.conn())
    second = etcd.cas(key, "two", create_only=True, **cluster.conn())
    assert first["succeeded"] is True
    assert second["succeeded"] is False and second["current"]["value"] == "one"
    assert etcd.get(key, **cluster.conn()) == "one"


def test_cas_on_a_stale_revision_fails_and_reports_the_current_entry(etcd, cluster, key):
    revision = etcd.put(key, "v1", **cluster.conn())["revision"]
    etcd.put(key, "v2", **cluster.conn())
    stale = etcd.cas(key, "v3", prev_revision=revision, **cluster.conn())
    assert stale["succeeded"] is False and stale["current"]["value"] == "v2"
    fresh = etcd.cas(key, "v3", prev_revision=stale["current"]["mod_revision"], **cluster.conn())
    assert fresh["succeeded"] is True and etcd.get(key, **cluster.conn()) == "v3"


def test_cas_on_the_previous_value_swaps_only_from_that_value(etcd, cluster, key):
    etcd.put(key, "a", **cluster.conn())
    assert etcd.cas(key, "b", prev_value="x", **cluster.conn())["succeeded"] is False
    assert etcd.cas(key, "b", prev_value="a", **cluster.conn())["succeeded"] is True
    assert etcd.get(key, **cluster.conn()) == "b"


def test_cas_without_any_condition_is_refused(etcd, cluster, key):
    with pytest.raises(SaltInvocationError, match="needs prev_value, prev_revision or create_only"):
        etcd.cas(key, "v", **cluster.conn())
    assert etcd.get(key, **cluster.conn()) is None


def test_concurrent_cas_on_revision_loses_no_update(etcd, cluster, key):
    etcd.put(key, "0", **cluster.conn())
    start, errors, conflicts = threading.Barrier(2), [], []

    def increment(times):
        try:
            start.wait()
            for _ in range(times):
                while True:
                    entry = etcd.get(key, meta=True, **cluster.conn())
                    done = etcd.cas(
                        key, str(int(entry["value"]) + 1), prev_revision=entry["mod_revision"], **cluster.conn()
                    )
                    if done["succeeded"]:
                        break
                    conflicts.append(1)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=increment, args=(10,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert etcd.get(key, **cluster.conn()) == "20"


# --------------------------------------------------------------------------------------------------------------------
# JSON values and invalid input
# --------------------------------------------------------------------------------------------------------------------
def test_json_values_are_stored_canonically_and_read_back_as_data(etcd, cluster, key):
    etcd.put(key, '{ "b": [1, 2],\n "a": "x" }', json=True, **cluster.conn())
    assert etcd.get(key, **cluster.conn()) == '{"a":"x","b":[1,2]}'
    assert etcd.get(key, json=True, **cluster.conn()) == {"a": "x", "b": [1, 2]}
    assert etcd.same_value('{"a":"x","b":[1,2]}', '{"b": [1, 2], "a": "x"}', json=True)
    assert not etcd.same_value('{"a":"x"}', '{"a": "y"}', json=True)


def test_invalid_json_is_refused_before_anything_is_written(etcd, cluster, key):
    with pytest.raises(SaltInvocationError, match=f"value for etcd key {key} is not valid JSON"):
        etcd.put(key, "{not json", json=True, **cluster.conn())
    with pytest.raises(SaltInvocationError, match="not valid JSON"):
        etcd.cas(key, "{not json", create_only=True, json=True, **cluster.conn())
    assert etcd.get(key, **cluster.conn()) is None


def test_reading_json_from_a_key_that_holds_no_json_names_the_key(etcd, cluster, key):
    etcd.put(key, "plain text", **cluster.conn())
    with pytest.raises(CommandExecutionError, match=f"etcd key {key} does not hold valid JSON"):
        etcd.get(key, json=True, **cluster.conn())


@pytest.mark.parametrize("call", ["get", "put", "delete", "ls", "delete_prefix"])
def test_a_key_or_prefix_without_leading_slash_is_refused(etcd, cluster, call):
    calls = {
        "get": lambda: etcd.get("registry/x", **cluster.conn()),
        "put": lambda: etcd.put("registry/x", "v", **cluster.conn()),
        "delete": lambda: etcd.delete("registry/x", **cluster.conn()),
        "ls": lambda: etcd.ls("registry", **cluster.conn()),
        "delete_prefix": lambda: etcd.delete("registry", prefix=True, **cluster.conn()),
    }
    with pytest.raises(SaltInvocationError, match=r"etcd (key|prefix) 'registry(/x)?' must be a string starting with"):
        calls[call]()


# --------------------------------------------------------------------------------------------------------------------
# Connection and TLS errors
# --------------------------------------------------------------------------------------------------------------------
def test_a_client_without_a_certificate_is_refused(etcd, cluster, key):
    with pytest.raises(CommandExecutionError) as error:
        etcd.put(key, "v", **cluster.conn(cert=None, key=None))
    message = str(error.value)
    assert "requires a client certificate" in message and "none was given" in message
    assert all(endpoint in message for endpoint in cluster.endpoints)
    assert etcd.get(key, **cluster.conn()) is None


def test_a_client_certificate_from_another_ca_is_refused(etcd, cluster, key, tmp_path):
    cert, cert_key = etcd_cluster.Pki(tmp_path, "rogue-ca").issue("rogue", "rogue-client")
    with pytest.raises(CommandExecutionError) as error:
        etcd.put(key, "v", **cluster.conn(cert=cert, key=cert_key))
    assert f"refused client certificate {cert}" in str(error.value)
    assert etcd.get(key, **cluster.conn()) is None


def test_a_wrong_ca_fails_naming_the_ca_file(etcd, cluster, key, tmp_path):
    wrong_ca = etcd_cluster.Pki(tmp_path, "some-other-ca").ca_file
    with pytest.raises(CommandExecutionError) as error:
        etcd.get(key, **cluster.conn(ca=wrong_ca))
    assert f"TLS verification of the server certificate failed with CA file {wrong_ca}" in str(error.value)


def test_unreachable_endpoints_error_names_every_endpoint_tried(etcd, cluster, key):
    dead = [f"https://127.0.0.1:{port}" for port in etcd_cluster.free_ports(2)]
    with pytest.raises(CommandExecutionError) as error:
        etcd.get(key, **cluster.conn(endpoints=dead, timeout=2))
    assert "no etcd endpoint could serve /v3/kv/range; tried 2" in str(error.value)
    assert all(f"{endpoint}: cannot connect" in str(error.value) for endpoint in dead)


def test_a_dead_endpoint_is_skipped_for_the_next_one(etcd, cluster, key):
    dead = f"https://127.0.0.1:{etcd_cluster.free_ports(1)[0]}"
    etcd.put(key, "v", **cluster.conn(endpoints=[dead, cluster.endpoints[0]]))
    assert etcd.get(key, **cluster.conn()) == "v"


def test_endpoints_must_be_https_urls(etcd, cluster, key):
    with pytest.raises(SaltInvocationError, match="etcd endpoint 'http://127.0.0.1:2379' must be an https:// URL"):
        etcd.get(key, **cluster.conn(endpoints="http://127.0.0.1:2379"))


def test_missing_tls_files_are_named(etcd, cluster, key, tmp_path):
    with pytest.raises(SaltInvocationError, match=f"etcd client certificate {tmp_path}/nope.crt does not exist"):
        etcd.get(key, **cluster.conn(cert=str(tmp_path / "nope.crt")))


def test_a_minion_takes_missing_connection_arguments_from_its_k8s_config(etcd, cluster, key, make_settings, tmp_path):
    for name, source in (
        ("etcd-ca.crt", cluster.ca),
        ("apiserver-etcd-client.crt", cluster.client_cert),
        ("apiserver-etcd-client.key", cluster.client_key),
    ):  # named as k8s_pki.layout names them
        (tmp_path / name).symlink_to(source)
    config = make_settings(
        {
            "nodes": {"m1": {"roles": ["master", "etcd"], "ip": "127.0.0.1"}},
            "etcd": {"client_port": cluster.members["etcd1"].client_port},
            "paths": {"pki_dir": str(tmp_path)},
        },
        minion_id="m1",
    )
    minion = load("k8s_etcd", salt={"k8s.config": lambda: config})
    minion.put(key, "from k8s.config")
    assert etcd.get(key, **cluster.conn()) == "from k8s.config"


def test_explicit_connection_arguments_do_not_consult_k8s_config(etcd, cluster, key):
    def no_settings():
        raise CommandExecutionError("no k8s pillar here")

    minion = load("k8s_etcd", salt={"k8s.config": no_settings})
    explicit = {name: value for name, value in cluster.conn().items() if name != "timeout"}
    minion.put(key, "v", **explicit)
    assert etcd.get(key, **cluster.conn()) == "v"
    with pytest.raises(
        CommandExecutionError,
        match=r"argument\(s\) cert, key not given, and k8s.config could not "
        "supply them: no k8s pillar here",
    ):
        minion.get(key, **cluster.conn(cert=None, key=None))


# --------------------------------------------------------------------------------------------------------------------
# Membership, status, health
# --------------------------------------------------------------------------------------------------------------------
def test_member_list_names_every_member_with_its_urls(etcd, cluster):
    members = {m["name"]: m for m in etcd.member_list(**cluster.conn())}
    assert sorted(members) == ["etcd1", "etcd2", "etcd3"]
    assert members["etcd2"]["client_urls"] == [cluster.members["etcd2"].client_url]
    assert members["etcd2"]["peer_urls"] == [cluster.members["etcd2"].peer_url]


def test_endpoint_status_reports_the_version_and_one_leader(etcd, cluster):
    status = etcd.endpoint_status(**cluster.conn())
    assert set(status) == set(cluster.endpoints)
    assert {s["version"] for s in status.values()} == {"3.4.23"}
    assert sum(s["is_leader"] for s in status.values()) == 1
    assert len({s["leader"] for s in status.values()}) == 1


def test_endpoint_health_of_a_healthy_cluster(etcd, cluster):
    assert etcd.endpoint_health(**cluster.conn()) == {e: {"healthy": True, "error": ""} for e in cluster.endpoints}


# --------------------------------------------------------------------------------------------------------------------
# States: key_present / key_absent
# --------------------------------------------------------------------------------------------------------------------
def test_key_present_creates_the_key_and_a_second_run_changes_nothing(etcd, cluster, key):
    state = states(etcd)
    first = state.key_present(key, "v1", **cluster.conn())
    second = state.key_present(key, "v1", **cluster.conn())
    assert first["result"] is True and first["changes"] == {"old": None, "new": "v1"}
    assert second["result"] is True and second["changes"] == {}
    assert etcd.get(key, **cluster.conn()) == "v1"


def test_key_present_updates_a_different_value(etcd, cluster, key):
    etcd.put(key, "old", **cluster.conn())
    result = states(etcd).key_present(key, "new", **cluster.conn())
    assert result["result"] is True and result["changes"] == {"old": "old", "new": "new"}
    assert etcd.get(key, **cluster.conn()) == "new"


def test_key_present_in_test_mode_reports_the_change_and_writes_nothing(etcd, cluster, key):
    dry = states(etcd, test=True)
    create = dry.key_present(key, "v1", **cluster.conn())
    assert create["result"] is None and create["changes"] == {"old": None, "new": "v1"}
    assert etcd.get(key, **cluster.conn()) is None
    etcd.put(key, "v0", **cluster.conn())
    update = dry.key_present(key, "v1", **cluster.conn())
    assert update["result"] is None and update["changes"] == {"old": "v0", "new": "v1"}
    assert etcd.get(key, **cluster.conn()) == "v0"


def test_key_present_compares_json_as_data(etcd, cluster, key):
    etcd.put(key, '{"b": 2,\n  "a": 1}', **cluster.conn())
    result = states(etcd).key_present(key, {"a": 1, "b": 2}, json=True, **cluster.conn())
    assert result["result"] is True and result["changes"] == {}
    changed = states(etcd).key_present(key, '{"a": 1, "b": 3}', json=True, **cluster.conn())
    assert changed["changes"] == {"old": '{"b": 2,\n  "a": 1}', "new": '{"a":1,"b":3}'}
    assert states(etcd).key_present(key, {"b": 3, "a": 1}, json=True, **cluster.conn())["changes"] == {}


def test_key_present_refuses_invalid_json_and_writes_nothing(etcd, cluster, key):
    result = states(etcd).key_present(key, "{oops", json=True, **cluster.conn())
    assert result["result"] is False and f"value for etcd key {key} is not valid JSON" in result["comment"]
    assert etcd.get(key, **cluster.conn()) is None


def test_key_present_refuses_unknown_arguments(etcd, cluster, key):
    result = states(etcd).key_present(key, "v", endpoint="https://x:2379", **cluster.conn())
    assert result["result"] is False and "unknown argument(s) endpoint" in result["comment"]


def test_key_present_only_if_absent_leaves_an_existing_value(etcd, cluster, key):
    etcd.put(key, "theirs", **cluster.conn())
    result = states(etcd).key_present(key, "mine", only_if_absent=True, **cluster.conn())
    assert result["result"] is True and result["changes"] == {}
    assert etcd.get(key, **cluster.conn()) == "theirs"


def test_key_present_only_if_absent_with_concurrent_writers_exactly_one_wins(etcd, cluster, key):
    state = states(etcd)
    for round_ in range(3):
        name, start, results = f"{key}/{round_}", threading.Barrier(2), {}

        def write(value, name=name, start=start, results=results):
            start.wait()
            results[value] = state.key_present(name, value, only_if_absent=True, **cluster.conn())

        threads = [threading.Thread(target=write, args=(value,)) for value in ("alpha", "beta")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        winners = [value for value, result in results.items() if result["changes"]]
        assert all(result["result"] is True for result in results.values()), results
        assert len(winners) == 1, results
        assert etcd.get(name, **cluster.conn()) == winners[0]


def test_key_present_retries_once_when_another_writer_changes_the_key_after_the_read(etcd, cluster, key):
    etcd.put(key, "v0", **cluster.conn())
    salt = salt_map(etcd)

    def read_then_other_writer(name, **kwargs):
        entry = etcd.get(name, **kwargs)
        etcd.put(name, "theirs", **cluster.conn())  # lands between our read and our compare-and-swap
        return entry

    salt["k8s_etcd.get"] = read_then_other_writer
    result = states(etcd, salt=salt).key_present(key, "mine", **cluster.conn())
    assert result["result"] is True
    assert result["changes"] == {"old": "theirs", "new": "mine"}
    assert "changed concurrently by another writer" in result["comment"]
    assert etcd.get(key, meta=True, **cluster.conn())["version"] == 3  # v0, theirs, mine: nothing lost or doubled


def test_key_present_never_overwrites_a_key_that_keeps_changing(etcd, cluster, key):
    etcd.put(key, "v0", **cluster.conn())
    salt, writes = salt_map(etcd), iter(["theirs-1", "theirs-2"])

    def other_writer_then_cas(name, value, **kwargs):
        etcd.put(name, next(writes), **cluster.conn())
        return etcd.cas(name, value, **kwargs)

    salt["k8s_etcd.cas"] = other_writer_then_cas
    result = states(etcd, salt=salt).key_present(key, "mine", **cluster.conn())
    assert result["result"] is False and result["changes"] == {}
    assert "changed concurrently by another writer twice" in result["comment"]
    assert etcd.get(key, **cluster.conn()) == "theirs-2"


def test_key_absent_deletes_the_key_and_a_second_run_changes_nothing(etcd, cluster, key):
    etcd.put(key, "v", **cluster.conn())
    dry = states(etcd, test=True).key_absent(key, **cluster.conn())
    assert dry["result"] is None and dry["changes"] == {"old": "v", "new": None}
    assert etcd.get(key, **cluster.conn()) == "v"
    first = states(etcd).key_absent(key, **cluster.conn())
    second = states(etcd).key_absent(key, **cluster.conn())
    assert first["result"] is True and first["changes"] == {"old": "v", "new": None}
    assert second["result"] is True and second["changes"] == {}
    assert etcd.get(key, **cluster.conn()) is None


# --------------------------------------------------------------------------------------------------------------------
# States: healthy (these stop members; they run last and restart what they stopped)
# --------------------------------------------------------------------------------------------------------------------
def test_healthy_reports_every_member_healthy(etcd, cluster):
    result = states(etcd).healthy("etcd", timeout=10, interval=0.5, **health_conn(cluster))
    assert result["result"] is True and result["changes"] == {}
    assert "3/3 members healthy (etcd1, etcd2, etcd3)" in result["comment"]
    assert states(etcd, test=True).healthy("etcd", **health_conn(cluster))["result"] is True


def test_healthy_with_one_member_down_has_quorum_and_names_the_degraded_member(etcd, cluster):
    cluster.stop_member("etcd3")
    try:
        result = states(etcd).healthy("etcd", timeout=20, interval=0.5, **health_conn(cluster))
        assert result["result"] is True and result["changes"] == {}
        assert "degraded" in result["comment"] and "2/3 members healthy" in result["comment"]
        assert f"unhealthy: etcd3 at {cluster.members['etcd3'].client_url}" in result["comment"]
    finally:
        cluster.start_member("etcd3")


def test_healthy_without_quorum_fails_clearly_within_its_timeout(etcd, cluster):
    cluster.stop_member("etcd2")
    cluster.stop_member("etcd3")
    try:
        began = time.monotonic()
        result = states(etcd).healthy("etcd", timeout=4, interval=0.5, **health_conn(cluster, request_timeout=2))
        elapsed = time.monotonic() - began
        assert result["result"] is False and result["changes"] == {}
        assert "etcd has no quorum after waiting 4s" in result["comment"]
        assert "unhealthy: etcd2" in result["comment"] and "unhealthy: etcd3" in result["comment"]
        assert elapsed < 20  # loosely bounded: timeout + one probe, on a shared machine
    finally:
        cluster.start_member("etcd2", wait=False)
        cluster.start_member("etcd3", wait=False)
        cluster.wait_healthy()
