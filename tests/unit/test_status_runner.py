"""The k8s runner's pure parts: how the nodes' k8s_ops.node_status answers become one report and an exit code, how
the kubesalt outputter prints it, and how orchestration events become step starts and ends. The answers here have
the shape the real minions give (tests/integration/test_status*.py run the runner against real minions, a real
etcd and a real kube-apiserver)."""

import pytest
import salt.config

from tests.support.loader import ROOT, load

INVENTORY = {"master01": ["etcd", "master"], "worker01": ["worker"], "worker02": ["worker"]}


@pytest.fixture(scope="module")
def runner():
    return load("k8s", "runners")


@pytest.fixture(scope="module")
def out():
    return load("kubesalt", "output", opts={"color": False})


def cert(identity, days, state="OK", reasons=()):
    return {
        "identity": identity,
        "days_left": days,
        "not_after": "2027-12-01T00:00:00Z",
        "state": state,
        "reasons": list(reasons),
    }


def node_report(minion, roles, certs=None, **extra):
    report = {
        "id": minion,
        "roles": roles,
        "inventory": INVENTORY,
        "ca_minion": "master01",
        "certificates": certs if certs is not None else {f"/pki/{minion}/kubelet.crt": cert("kubelet", 300)},
        "versions": {"kubelet": "1.34.10", "containerd": "2.3.4"},
        "probed": True,
    }
    report.update(extra)
    return {"ret": report, "retcode": 0, "jid": "1"}


def node_object(ready=True, reason="KubeletReady"):
    return {
        "ready": ready,
        "reason": reason,
        "message": "kubelet is posting ready status" if ready else "container runtime network not ready",
        "roles": [],
        "kubelet_version": "v1.34.10",
        "runtime_version": "containerd://2.3.4",
    }


def healthy_cluster(**changes):
    """Three answering nodes of a healthy cluster; ``changes`` replaces a minion's answer."""
    api = {"server": "https://127.0.0.1:6443", "ready": True, "error": ""}
    etcd = {
        "endpoint": "https://127.0.0.1:2379",
        "status": {"version": "3.6.14", "is_leader": True, "db_size": 2 * 1024 * 1024, "raft_index": 10},
        "health": {
            "members": {"master01": {"id": "a1", "endpoint": "https://10.0.0.11:2379", "healthy": True, "error": ""}},
            "healthy": ["master01"],
            "unhealthy": [],
            "quorum": True,
        },
    }
    nodes = {"items": {n: node_object() for n in INVENTORY}, "error": ""}
    returns = {
        "master01": node_report(
            "master01", ["etcd", "master"], versions={"kubelet": "1.34.10", "containerd": "2.3.4", "etcd": "3.6.14"}
        ),
        "worker01": node_report("worker01", ["worker"], api=dict(api, server="https://10.0.0.11:6443")),
        "worker02": node_report("worker02", ["worker"], api=dict(api, server="https://10.0.0.11:6443")),
    }
    returns["master01"]["ret"].update(api=api, etcd=etcd, nodes=nodes)
    returns.update(changes)
    return returns


def test_a_healthy_cluster_needs_no_attention(runner, out):
    report = runner._summarize(healthy_cluster(), targeted=list(INVENTORY))
    assert report["ok"] and report["attention"] == []
    master = report["nodes"]["master01"]
    assert master["ready"] is True and master["roles"] == ["etcd", "master"]
    assert master["versions"]["kubelet"] == {"installed": "1.34.10", "running": "1.34.10"}
    assert master["versions"]["etcd"] == {"installed": "3.6.14", "running": "3.6.14"}
    assert report["etcd"]["leader"] == "master01" and report["etcd"]["quorum"] is True
    assert [a["server"] for a in report["api"]] == ["https://10.0.0.11:6443", "https://127.0.0.1:6443"]
    assert report["api"][0]["from"] == ["worker01", "worker02"]
    text = out.output({"outputter": "kubesalt", "report": dict(report, kind="status"), "retcode": 0})
    lines = text.splitlines()
    assert lines[0] == "kubesalt: all OK"
    assert "master01  etcd,master  Ready  1.34.10  2.3.4       3.6.14" in lines
    assert "master01     healthy  *       2.0 MiB  3.6.14   https://10.0.0.11:2379" in lines
    assert "quorum: yes   last snapshot: none reported" in lines


def test_every_problem_is_named_once(runner):
    returns = healthy_cluster(
        worker02={"out": "no_return", "ret": "Minion did not return. [No response]", "retcode": 1},
    )
    master = returns["master01"]["ret"]
    master["nodes"]["items"]["worker01"] = node_object(False, "KubeletNotReady")
    del master["nodes"]["items"]["worker02"]
    master["certificates"]["/pki/master01/apiserver.crt"] = cert(
        "apiserver", 9, "renew", ["expires on 2026-12-10T00:00:00Z, in less than renew_days (30)"]
    )
    master["etcd"]["health"]["members"]["etcd02"] = {"id": "b2", "endpoint": "https://e2", "healthy": False}
    master["etcd"]["health"]["members"]["etcd02"]["error"] = "connection refused"
    returns["worker01"]["ret"]["api"] = {"server": "https://10.0.0.11:6443", "ready": False, "error": "timed out"}
    returns["etcd02"] = {"ret": "'k8s_ops.node_status' is not available.", "retcode": 254}
    report = runner._summarize(returns, targeted=["master01", "worker01", "worker02", "etcd02"])
    assert report["attention"] == [
        "minion worker02 did not answer",
        "minion etcd02 answered with an error: 'k8s_ops.node_status' is not available.",
        "node worker01 is not Ready (KubeletNotReady: container runtime network not ready)",
        "node worker02 is not Ready (no Node object)",
        "certificate apiserver on master01: renew, 9 days left (expires on 2026-12-10T00:00:00Z, in less than "
        "renew_days (30))",
        "etcd member etcd02 is unhealthy: connection refused",
        "API server https://10.0.0.11:6443 is not ready (worker01: timed out)",
    ]
    assert report["missing"] == ["worker02"] and report["certificates"][0]["identity"] == "apiserver"


def test_a_minion_in_the_inventory_that_nobody_targeted_is_missing_too(runner):
    """A node whose role grain is gone is not matched by the target; the inventory still expects it."""
    returns = healthy_cluster()
    del returns["worker02"]
    report = runner._summarize(returns, targeted=["master01", "worker01"])
    assert report["missing"] == ["worker02"] and "minion worker02 did not answer" in report["attention"]


def test_unreadable_certificates_come_first_and_cas_are_judged_too(runner):
    returns = healthy_cluster()
    returns["worker01"]["ret"]["certificates"] = {
        "/pki/worker01/kubelet.crt": cert("kubelet", 300),
        "/pki/worker01/broken.crt": {"identity": None, "state": "unreadable", "reasons": ["not PEM"]},
        "/pki/worker01/kubernetes-ca.crt": cert(None, 1000, "renew", ["past two thirds of its lifetime (...)"]),
    }
    report = runner._summarize(returns, targeted=list(INVENTORY))
    names = [(c["minion"], c["name"]) for c in report["certificates"]]
    assert names[0] == ("worker01", "broken.crt") and names[-1] == ("worker01", "kubernetes-ca.crt")
    assert "certificate broken.crt on worker01: unreadable, unreadable (not PEM)" in report["attention"]
    assert any(
        a.startswith("certificate kubernetes-ca.crt on worker01: renew, 1000 days left") for a in report["attention"]
    )


def test_nothing_probed_where_kubesalt_does_not_manage_services(runner, out):
    returns = {m: node_report(m, r, probed=False) for m, r in INVENTORY.items()}
    for answer in returns.values():
        answer["ret"]["probed"] = False
    report = runner._summarize(returns, targeted=list(INVENTORY))
    assert report["ok"] and report["etcd"]["probed"] is False and report["api"] == []
    assert all(n["ready"] is None for n in report["nodes"].values())
    text = out.status_text(dict(report, kind="status"))
    assert "worker01  worker       not probed" in text and "ETCD MEMBER" not in text


def test_drift_lists_what_a_rerun_would_change_per_node(runner, out):
    drift = {
        "master01": {"ret": {"a": {"__id__": "kube-apiserver systemd unit", "result": None, "changes": {"diff": "x"}}}},
        "worker01": {"ret": {"b": {"__id__": "kubelet service", "result": True, "changes": {}}}},
        "worker02": {"out": "no_return", "ret": "Minion did not return.", "retcode": 1},
    }
    report = runner._summarize(healthy_cluster(), targeted=list(INVENTORY), drift_returns=drift)
    assert report["drift"]["master01"] == {"pending": ["kube-apiserver systemd unit"], "failed": []}
    assert report["drift"]["worker01"] == {"pending": [], "failed": []}
    assert "master01: a re-run would change 1 state(s), 0 fail" in report["attention"]
    assert "drift of worker02 unknown: did not answer" in report["attention"]
    assert "master01  kube-apiserver systemd unit" in out.status_text(dict(report, kind="status"))


# --------------------------------------------------------------------------------------------------------------------
# Orchestration progress
# --------------------------------------------------------------------------------------------------------------------
class Bus:
    def __init__(self):
        self.fired = []

    def fire_event(self, data, tag):
        self.fired.append((tag, data))


def args_event(name, tgt="G@role:master or G@role:worker", batch=None, stamp="2026-12-01T12:00:00+00:00"):
    """salt/run/<jid>/args as salt.state / salt.function fire it when a step starts."""
    return {
        "type": "state",
        "tgt": tgt,
        "name": name,
        "args": {"tgt_type": "compound", "batch": batch},
        "_stamp": stamp,
    }


def test_the_follower_turns_salt_events_into_step_starts_and_ends(runner):
    said, bus = [], Bus()
    plan = {("saltutil.sync_utils", "G@role:master or G@role:worker"): "sync kubesalt shared core"}
    plan[("node certificates everywhere", "G@role:master or G@role:worker")] = "node certificates everywhere"
    follower = runner.Follower(
        plan=plan, expand=lambda tgt, tgt_type: ["master01", "worker01"], fire=bus, say=said.append
    )
    jid = "20261201120000000001"
    assert follower.handle(f"salt/job/{jid}/new", {"fun": "test.ping"}) is False and follower.jid is None
    follower.handle(f"salt/run/{jid}/new", {"fun": "runner.state.orchestrate", "fun_args": ["k8s.cluster"]})
    assert follower.jid == jid
    # a salt.function step starts under its function's name; the plan gives its ID
    follower.handle(f"salt/run/{jid}/args", args_event("saltutil.sync_utils", stamp="2026-12-01T12:00:00+00:00"))
    follower.handle(
        f"salt/run/{jid}/args",
        args_event("node certificates everywhere", batch="10", stamp="2026-12-01T12:00:02.5+00:00"),
    )
    ret = {
        "data": {
            "m_master": {
                "a": {"__id__": "sync kubesalt shared core", "__run_num__": 0, "result": True, "duration": 2400.0},
                "b": {
                    "__id__": "node certificates everywhere",
                    "__run_num__": 1,
                    "result": False,
                    "duration": 4321.0,
                    "comment": "Run failed on minions: worker01\nworker01: the CA minion did not answer",
                },
            }
        },
        "retcode": 1,
    }
    assert follower.handle(f"salt/run/{jid}/ret", {"return": ret, "_stamp": "2026-12-01T12:00:07+00:00"}) is True
    assert [tag for tag, _ in bus.fired] == [
        f"kubesalt/orchestrate/{jid}/step/sync-kubesalt-shared-core/start",
        f"kubesalt/orchestrate/{jid}/step/sync-kubesalt-shared-core/end",
        f"kubesalt/orchestrate/{jid}/step/node-certificates-everywhere/start",
        f"kubesalt/orchestrate/{jid}/step/node-certificates-everywhere/end",
    ]
    first_end, start, last_end = bus.fired[1][1], bus.fired[2][1], bus.fired[3][1]
    assert first_end["result"] is True and first_end["duration"] == 2.5  # ended when the next step started
    assert start["targets"] == ["master01", "worker01"] and start["batch"] == "10" and start["number"] == 2
    assert last_end["result"] is False and last_end["duration"] == 4.3 and last_end["failed"] == ["worker01"]
    assert said[1].endswith("start  1/2 sync kubesalt shared core  (2 minions: master01, worker01)")
    assert said[-1].endswith("FAIL   node certificates everywhere  4.3 s: Run failed on minions: worker01")
    table = runner._table_from_orchestration(follower.outcome, follower.table())
    assert [(s["step"], s["result"], len(s["targets"])) for s in table] == [
        ("sync kubesalt shared core", True, 2),
        ("node certificates everywhere", False, 2),
    ]


def test_the_follower_of_a_converge_run_ends_with_its_done_event(runner):
    follower = runner.Follower(expand=lambda tgt, tgt_type: [])
    jid = "20261201120000000002"
    # k8s.converge's own runner job starts state.orchestrate with the jid its steps carry
    follower.handle(
        "salt/run/99/new", {"fun": "runner.state.orchestrate", "fun_args": ["k8s.cluster", {"orchestration_jid": jid}]}
    )
    assert follower.jid == jid
    follower.handle(f"salt/run/{jid}/args", args_event("smoke checks"))
    done = {"steps": [{"step": "smoke checks", "result": True, "duration": 0.7, "comment": "ok"}], "result": True}
    assert follower.handle(f"kubesalt/orchestrate/{jid}/done", done) is True
    assert follower.table()[0]["result"] is True and follower.table()[0]["duration"] == 0.7


def test_the_timing_table_comes_from_the_orchestration_return_in_run_order(runner, out):
    data = {
        "data": {
            "master_master": {
                "b": {
                    "__id__": "validate configuration on every node",
                    "__run_num__": 1,
                    "result": True,
                    "duration": 1200.0,
                    "start_time": "12:00:01.5",
                    "comment": "ok",
                },
                "a": {
                    "__id__": "sync kubesalt shared core",
                    "__run_num__": 0,
                    "result": True,
                    "duration": 800.0,
                    "start_time": "12:00:00.1",
                    "comment": "ok",
                },
                "c": {
                    "__id__": "smoke checks",
                    "__run_num__": 2,
                    "result": False,
                    "duration": 5.0,
                    "comment": "Run failed on minions: master01\nmaster01: node not Ready",
                },
            }
        }
    }
    seen = [{"step": "sync kubesalt shared core", "number": 1, "targets": ["m", "w1", "w2"]}]
    rows = runner._table_from_orchestration(data, seen)
    assert [r["step"] for r in rows] == [
        "sync kubesalt shared core",
        "validate configuration on every node",
        "smoke checks",
    ]
    text = out.converge_text({"kind": "converge", "steps": rows, "result": False, "duration": 2.1})
    assert "sync kubesalt shared core             3        ok      0.8 s" in text
    assert "total                                 -        FAIL    2.1 s" in text
    assert "smoke checks: Run failed on minions: master01" in text


def test_anything_but_a_report_prints_as_nested_also_when_kubesalt_is_the_chosen_outputter():
    # `salt-run state.orchestrate k8s.cluster --out=kubesalt`: Salt's get_printout takes opts["output"] over the
    # outputter asked for, so handing other data to "nested" with those opts came back here until RecursionError.
    # Salt's own outputter loader must find this outputter, as salt-run's does (from extension_modules).
    opts = dict(salt.config.DEFAULT_MINION_OPTS, color=False, output="kubesalt")
    opts["outputter_dirs"] = [str(ROOT / "_output")]
    chosen = load("kubesalt", "output", opts=opts)
    text = chosen.output({"master01": {"result": True, "comment": "ok"}})
    assert text.splitlines() == [
        "master01:",
        "    ----------",
        "    comment:",
        "        ok",
        "    result:",
        "        True",
    ]
