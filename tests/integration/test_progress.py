"""Progress of the orchestration on a real salt-master: `salt-run k8s.converge` runs k8s.cluster, prints each step's
start (its minions) and end (result, time) as they happen, fires kubesalt/orchestrate/<jid>/step/<step>/start|end
in order with durations, and ends with a table of every step; `salt-run k8s.follow` in another terminal follows the
same run from Salt's own events (salt/run/<jid>/args at a start, the fire_event result of each step at its end)."""

import json
import re
import subprocess
import time

import pytest

from tests.integration.conftest import NODES, ORCHESTRATION_STEPS, SALT_RUN

pytestmark = pytest.mark.integration
MASTER = "kubesalt-master"
STEPS = ORCHESTRATION_STEPS


def started(line):
    """The step of a progress line '<time>  start  [n/N ]<step>  (<minions>)'."""
    return re.sub(r"^\S+  start  (\d+/\d+ )?", "", line).split("  (")[0]


def slug(step):
    return re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")


def followed_run(salt_master, *args):
    """Run ``salt-run <args>`` while ``salt-run k8s.follow`` runs in another "terminal" (started first, so that it
    listens before the run starts). Returns (the run, (follow's exit code, stdout, stderr))."""
    follow = subprocess.Popen(
        [str(SALT_RUN), "-c", str(salt_master.config_dir), "k8s.follow", "timeout=600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        run = subprocess.run(
            [str(SALT_RUN), "-c", str(salt_master.config_dir), *args], capture_output=True, text=True, timeout=900
        )
        out, err = follow.communicate(timeout=120)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    return run, (follow.returncode, out, err)


@pytest.fixture(scope="module")
def converged(runner_synced, salt_master, event_listener):
    """`salt-run k8s.follow` started first, then `salt-run k8s.converge`, both as an operator types them."""
    start = time.time()
    converge, followed = followed_run(salt_master, "k8s.converge")
    # The master forwards its events to the listener on its own time: the run's last events (the last step's end,
    # then done) may arrive after salt-run has returned. Wait for done, the very last one.
    event_listener.wait_for_events([(MASTER, "kubesalt/orchestrate/*/done")], timeout=30, after_time=start)
    events = event_listener.get_events([(MASTER, "kubesalt/orchestrate/*")], after_time=start)
    return converge, followed, sorted(events, key=lambda e: e.stamp)


def test_converge_prints_each_step_as_it_starts_and_ends_then_a_timing_table(converged):
    out, _, _ = converged
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    starts = [started(line) for line in lines if "  start  " in line]
    ends = [m.group(1) for m in (re.fullmatch(r"\d\d:\d\d:\d\d  ok     (.+)  \d+\.\d s", x) for x in lines) if m]
    assert starts == STEPS and ends == STEPS, out.stdout
    nodes = ", ".join(sorted(NODES))
    number = STEPS.index("node certificates everywhere") + 1
    assert f"  start  {number}/{len(STEPS)} node certificates everywhere  (3 minions, batch 4: {nodes})" in out.stdout
    header = lines.index(next(line for line in lines if line.startswith("STEP ")))
    table = lines[header + 1 :]
    assert [row.split("  ")[0] for row in table[: len(STEPS)]] == STEPS
    for row in table[: len(STEPS)]:
        assert re.search(r"  ok\s+\d+\.\d s$", row), row
    assert re.fullmatch(r"total\s+-\s+ok\s+\d+\.\d s", table[len(STEPS)]), table[len(STEPS)]
    print(out.stdout)  # README's example


def test_converge_fires_a_start_and_an_end_event_per_step_in_order_with_durations(converged):
    _, _, events = converged
    steps = [e for e in events if "/step/" in e.tag]
    assert [e.tag.split("/step/")[1] for e in steps] == [
        f"{slug(s)}/{phase}" for s in STEPS for phase in ("start", "end")
    ]
    run = steps[0].data["run"]
    assert all(e.tag.startswith(f"kubesalt/orchestrate/{run}/") for e in events)
    for start, end in zip(steps[::2], steps[1::2], strict=True):
        assert start.data["step"] == end.data["step"] and start.stamp <= end.stamp
        assert start.data["tgt_type"] == "compound" and start.data["targets"], start.data
        assert end.data["result"] is True and isinstance(end.data["duration"], float), end.data
    total = sum(e.data["duration"] for e in steps[1::2])
    (done,) = [e for e in events if e.tag == f"kubesalt/orchestrate/{run}/done"]
    assert done.data["result"] is True and done.data["duration"] >= total - 1 and done.data["failed"] == []


def test_follow_in_another_terminal_saw_the_same_steps(converged):
    _, (rc, out, err), _ = converged
    assert rc == 0, out[-3000:] + err[-3000:]
    starts = [started(line) for line in out.splitlines() if "  start  " in line]
    assert starts == STEPS, out
    assert "following orchestration" in out and "STEP " in out


def test_follow_prints_a_plain_state_orchestrate_run_which_is_unchanged(runner_synced, salt_master, event_listener):
    start = time.time()
    plain, (rc, out, err) = followed_run(salt_master, "--out=json", "state.orchestrate", "k8s.cluster")
    assert plain.returncode == 0, plain.stderr[-3000:]
    data = json.loads(plain.stdout)
    assert set(data) == {"data", "outputter", "retcode"} and data["outputter"] == "highstate"  # as before
    steps = next(iter(data["data"].values()))
    assert sorted(s["__id__"] for s in steps.values()) == sorted(STEPS)
    assert rc == 0, out[-3000:] + err[-3000:]
    assert [started(line) for line in out.splitlines() if "  start  " in line] == STEPS, out
    # the follower's table has Salt's own duration of every step
    table = out.splitlines()[out.splitlines().index(next(x for x in out.splitlines() if x.startswith("STEP "))) + 1 :]
    durations = {r["__id__"]: round(r["duration"] / 1000.0, 1) for r in steps.values()}
    for row in table[: len(STEPS)]:
        step = row.split("  ")[0]
        assert row.endswith(f"  ok      {durations[step]:.1f} s"), (row, durations[step])
    assert not event_listener.get_events([(MASTER, "kubesalt/orchestrate/*")], after_time=start)  # follow only reads
