"""A rolling upgrade under load (issue 20): a lab brought up on the old component set --
`make lab-down; LAB_PROFILE=old-components LAB_MASTERS=3 LAB_WORKERS=2 make lab` (bookworm's etcd 3.4.23,
containerd 1.6.20, runc 1.1.5, CNI plugins 1.1.1 on trixie nodes) -- is upgraded to the current lab set (etcd 3.5,
containerd 1.7, runc 1.3, CNI plugins 1.9) by changing the pillar's versions and running
`salt-run state.orchestrate k8s.upgrade`, while a Deployment with a pod on each worker and a PodDisruptionBudget
serves a NodePort polled every 0.5 s and the API takes a write every 2 s (tests/lab/traffic.py).

Recorded (lab reports, `upgrade.jsonl`, and printed): failed requests (goal 0), acknowledged writes lost, nodes Ready
at the end, what the test=True run would change, the changes of a second run (0), wall time per phase. Kubernetes
itself stays at 1.20.2: it is the only release the lab builds, so the control-plane phase has nothing to change.

The lab is left upgraded, with the current set's pillar and mirror: `make lab-down` afterwards (a `make lab` on
it would write the old-components pillar again)."""

import json
import os
import time
import uuid

import pytest

from tests.lab.conftest import STATE, lab, record, wait_for
from tests.lab.labctl import builds, master, mirror
from tests.lab.labctl.orchestration import step_changes
from tests.lab.test_day2 import read_pillar
from tests.lab.traffic import Traffic, kube, nodes_ready, web_manifest

pytestmark = pytest.mark.lab
NS = "kubesalt-upgrade"
RUN = uuid.uuid4().hex[:8]
PROFILE = "old-components"
# a pod being evicted keeps serving this long after it left the Service's endpoints (kube-proxy on every node
# drops it from its rules first), as a Deployment meant to be drained without a failed request does
PRE_STOP = 5


def union_mirror(*manifests):
    """One directory serving every manifest's files (symlinks; later manifests win), for the artifact mirror."""
    www = STATE / "mirror-upgrade" / "www"
    for manifest in manifests:
        top = manifest["mirror_dir"]
        for root, _dirs, files in os.walk(top):
            for name in files:
                source = os.path.join(root, name)
                target = www / os.path.relpath(source, top)
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink() or target.exists():
                    target.unlink()
                target.symlink_to(source)
    return str(www)


def runtime_versions(server):
    items = json.loads(kube(server, "get", "nodes", "-o", "json"))["items"]
    return {n["metadata"]["name"]: n["status"]["nodeInfo"]["containerRuntimeVersion"] for n in items}


def phase_times(steps):
    """Wall time (s) of each orchestration phase, from the steps' durations."""
    phases = {}
    for step in sorted(steps.values(), key=lambda s: s["__run_num__"]):
        sid = step["__id__"]
        if sid.startswith(("sync", "validate")):
            name = "sync + validate"
        elif sid.startswith("etcd members"):
            name = "etcd members one at a time"
        elif sid.endswith(("for the upgrade", "kube-proxy upgraded", "Ready and uncordoned")):
            name = "node " + sid.split(" ", 1)[0].rstrip(",")
        else:
            name = sid
        phases[name] = round(phases.get(name, 0) + float(step.get("duration") or 0) / 1000, 1)
    return phases


def test_upgrade_from_the_old_component_set_under_load(inventory, masters, workers):
    lab_json = json.loads((STATE / "lab.json").read_text())
    if lab_json.get("profile") != PROFILE or len(workers) < 2:
        pytest.skip(f"needs a lab on profile {PROFILE} with 2 workers: make lab-down; LAB_PROFILE={PROFILE} make lab")
    server = f"https://{inventory[masters[0]]['ip']}:6443"
    ca = masters[0]
    old, new = (builds.build_artifacts(p) for p in (PROFILE, "current"))  # each profile's manifest
    assert old["versions"]["kubernetes"] == new["versions"]["kubernetes"]  # only 1.20.2 builds here
    before = runtime_versions(server)
    assert set(before.values()) == {f"containerd://{old['versions']['containerd']}"}, before

    kube(server, "delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=180)
    kube(server, "apply", "-f", "-", input=web_manifest(NS, pre_stop_seconds=PRE_STOP))
    kube(server, "-n", NS, "rollout", "status", "deployment/web", "--timeout=180s", timeout=200)
    node_port = json.loads(kube(server, "-n", NS, "get", "service", "web", "-o", "json"))["spec"]["ports"][0][
        "nodePort"
    ]
    # the node-local balancer's port from the lab's pillar file (pillar.get masks pillar values in its output)
    port = (read_pillar()[1].get("api_balancer") or {}).get("port", 6444)
    traffic = Traffic(inventory, workers, node_port, port, RUN, tag="upgrade")
    try:
        time.sleep(10)  # warm up
        assert traffic.since((0, 0))["api_total"] > 0, "the API load inside the worker does not run"

        # the current set's artifacts next to the old ones, and the pillar's versions changed to them
        mirror.mirror_start(union_mirror(old, new))
        master.write_pillar(lab_json, new)
        lab("salt", "*", "saltutil.refresh_pillar", "wait=True")

        # test=True: the plan, and nothing changes
        mark = traffic.mark()
        out, steps = run_upgrade("test=True")
        plan = preflight_plan(steps, ca)
        assert plan and plan[0] == "etcd snapshot: taken first", plan
        assert runtime_versions(server) == before, "test=True changed the nodes"
        record("upgrade", phase="test=True", plan=plan, steps=len(steps))
        print("\nplan (test=True):\n" + "\n".join(plan))

        # the upgrade
        started = time.monotonic()
        out, steps = run_upgrade()
        took = round(time.monotonic() - started, 1)
        time.sleep(10)  # the last node's pods settle under the load
        figures = traffic.since(mark)
        phases = phase_times(steps)
        record("upgrade", phase="k8s.upgrade", seconds=took, phases=phases, **figures)
        print(f"\nk8s.upgrade in {took} s: {json.dumps(phases)}\nload: {json.dumps(figures)}")

        after = runtime_versions(server)
        assert set(after.values()) == {f"containerd://{new['versions']['containerd']}"}, after
        ready = wait_for(lambda: all(nodes_ready(server).values()) and nodes_ready(server), 120, "every node Ready")
        unschedulable = [
            n["metadata"]["name"]
            for n in json.loads(kube(server, "get", "nodes", "-o", "json"))["items"]
            if n["spec"].get("unschedulable")
        ]
        assert not unschedulable, unschedulable
        # every etcd member at the new version, nothing left to do: the preflight's own plan on the CA minion
        left = json.loads(lab("salt", "--out=json", "--static", ca, "k8s_upgrade.preflight").stdout)[ca]
        assert left["etcd"] == {} and left["nodes"] == {} and left["snapshot"] is False, left

        # a second run changes nothing
        mark2 = traffic.mark()
        _, again = run_upgrade()
        # the states that changed on the minions (a salt.function step always reports its return as changes)
        changed = {
            s["__id__"]: step_changes(s) for s in again.values() if step_changes(s) and "sync" not in s["__id__"]
        }
        record("upgrade", phase="second run", changed_steps=len(changed), **traffic.since(mark2))
        print(f"\nsecond run: {len(changed)} steps with changes")
    finally:
        traffic.finish()
    acknowledged, lost = traffic.lost_writes(server)
    record(
        "upgrade",
        phase="end",
        nodes_ready=f"{sum(ready.values())}/{len(ready)}",
        acknowledged=len(acknowledged),
        lost=len(lost),
        examples=lost[:5],
    )
    print(
        f"\nnodes Ready {sum(ready.values())}/{len(ready)}; writes acknowledged {len(acknowledged)}, lost {len(lost)}"
    )
    kube(server, "delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)
    assert changed == {}, changed
    assert not lost, lost[:5]
    assert figures["web_failed"] == 0, figures
    assert figures["api_failed"] == 0, figures


def preflight_plan(steps, ca):
    """The plan the preflight step reported (its changes on the CA minion)."""
    step = next(s for s in steps.values() if s["__id__"] == "upgrade preflight and plan")
    states = ((step.get("changes") or {}).get("ret") or {}).get(ca) or {}
    return next((s["changes"]["plan"] for s in states.values() if (s.get("changes") or {}).get("plan")), [])


def run_upgrade(*args):
    """``salt-run state.orchestrate k8s.upgrade`` on the lab's master: ``(process, steps)``; fails naming every
    failed step."""
    out = lab("salt-run", "--out=json", "state.orchestrate", "k8s.upgrade", *args, timeout=3600, check=False)
    data = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}
    steps = next(iter(data.get("data", {}).values()), {}) if data else {}
    failed = {s["__id__"]: s.get("comment", "")[:2000] for s in steps.values() if s.get("result") is False}
    assert out.returncode == 0 and steps and not failed, (out.stdout[-4000:], out.stderr[-2000:], failed)
    return out, steps
