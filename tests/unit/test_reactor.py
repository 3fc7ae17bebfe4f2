"""The boot reactor cannot be made to converge another minion. A minion can fire salt/minion/<victim>/start with any
data (Salt passes a minion's event list through as it is), so the reactor only asks the minion named in the tag, and
that minion converges only if its own salt-minion really just started (k8s.boot_converge, from its process table)."""

import os
import pathlib

import pytest

from tests.support import reactor
from tests.support.loader import ROOT, load


@pytest.fixture(scope="module")
def render(tmp_path_factory):
    return reactor.renderer("converge", reactor.master_opts(tmp_path_factory.mktemp("master")))


def test_a_start_event_asks_the_minion_of_the_tag_and_only_it(render):
    states = render("salt/minion/worker01/start", {"id": "worker01", "cmd": "_minion_event"})
    (state,) = states.values()
    args = {k: v for item in state["local.k8s.boot_converge"] for k, v in item.items()}
    assert args["tgt"] == "worker01" and args["kwarg"] == {"max_age": 600}


def test_the_id_inside_the_event_data_chooses_nobody(render):
    states = render("salt/minion/worker01/start", {"id": "master01"})
    assert "master01" not in str(states)


@pytest.mark.parametrize(
    "tag",
    [
        "salt/minion/*/start",
        "salt/minion/Worker01/start",
        "salt/minion/a b/start",
        "salt/minion/worker01/stop",
        "salt/minion/worker01/start/x",
        "x/minion/w/start",
        "salt/minion/worker01\n/start",
    ],
)
def test_anything_but_a_start_tag_with_a_valid_minion_id_does_nothing(render, tag):
    assert render(tag, {"id": "worker01"}) == {}


def fake_proc(tmp_path, uptime, chain):
    """A /proc with an uptime and a parent chain [(pid, ppid, start seconds after boot, cmdline)]."""
    ticks = os.sysconf("SC_CLK_TCK")
    (tmp_path / "uptime").write_text(f"{uptime} 0.0\n")
    for pid, ppid, start, cmdline in chain:
        d = tmp_path / str(pid)
        d.mkdir()
        fields = ["S", str(ppid)] + ["0"] * 17 + [str(int(start * ticks))]
        (d / "stat").write_text(f"{pid} (python3) {' '.join(fields)}\n")
        (d / "cmdline").write_bytes(cmdline.replace(" ", "\0").encode())
    return tmp_path


def test_minion_age_is_that_of_the_oldest_salt_minion_ancestor(tmp_path):
    k8s = load("k8s")
    proc = fake_proc(
        tmp_path,
        1000.0,
        [
            (300, 200, 990.0, "/usr/bin/python3 /usr/bin/salt-minion MinionJob"),
            (200, 100, 900.0, "/usr/bin/python3 /usr/bin/salt-minion"),
            (100, 1, 10.0, "/lib/systemd/systemd --user"),
        ],
    )
    assert k8s._minion_age(300, proc=str(proc)) == pytest.approx(100.0)


@pytest.mark.parametrize("age, converges", [(5.0, True), (601.0, False), (None, False)])
def test_boot_converge_runs_highstate_only_for_a_minion_that_just_started(age, converges):
    ran = []
    k8s = load("k8s", salt={"state.highstate": lambda: ran.append(1) or {"ok": True}})
    k8s._minion_age = lambda: age
    result = k8s.boot_converge(max_age=600)
    assert result["converged"] is converges and bool(ran) is converges


def test_the_reactor_is_the_one_the_readme_documents():
    assert "salt://k8s/reactor/converge.sls" in pathlib.Path(ROOT / "README.md").read_text()
