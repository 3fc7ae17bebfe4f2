"""The CIS Kubernetes Benchmark v1.12 on the running lab: `salt '*' k8s_cis.report --out=json` on every node, live
(each node's running etcd, control plane, kubelet and kube-proxy read from /proc/<pid>/cmdline, the files on its
disk). Prints a table (node x section: pass/fail/manual/n/a) and then every FAIL with what was seen; fails on any
FAIL. The counts are recorded for bench/fault_summary.py (`make lab-summary`). docs/cis-benchmark.md lists every
check, what kubesalt does for it, and why the N/A ones do not apply."""

import json

import pytest

from tests.lab.conftest import lab, record

pytestmark = pytest.mark.lab
RESULTS = ("PASS", "FAIL", "MANUAL", "N/A")


@pytest.fixture(scope="module")
def reports(inventory):
    # k8s_cis may be newer than what the nodes synced at their last orchestration
    lab("salt", "*", "saltutil.sync_utils", timeout=300)  # the shared core first: the modules import it
    lab("salt", "*", "saltutil.sync_modules", timeout=300)
    # A FAIL sets the job's exit code: read the answers whatever it is.
    out = lab("salt", "--out=json", "--static", "*", "k8s_cis.report", timeout=300, check=False)
    answers = json.loads(out.stdout or "{}")
    missing = sorted(set(inventory) - set(answers))
    assert not missing, f"no report from {missing}: {out.stderr[-2000:]}"
    bad = {node: answer for node, answer in answers.items() if not isinstance(answer, dict) or "checks" not in answer}
    assert not bad, f"k8s_cis.report did not run on every node: {json.dumps(bad)[:3000]}"
    return dict(sorted(answers.items()))


def table(reports):
    sections = sorted({s for r in reports.values() for s in r["counts"] if s != "total"})
    head = f"{'node':<12} " + " ".join(f"{'section ' + s:>17}" for s in sections) + f" {'total':>17}"
    lines = [
        "CIS Kubernetes Benchmark v1.12, live on every node (pass/fail/manual/n-a)",
        head,
    ]
    for node, report in reports.items():
        cells = []
        for section in [*sections, "total"]:
            counts = report["counts"].get(section)
            cells.append("/".join(str(counts[r]) for r in RESULTS) if counts else "-")
        lines.append(f"{node:<12} " + " ".join(f"{c:>17}" for c in cells))
    fails = [(node, row) for node, r in reports.items() for row in r["checks"] if row["result"] == "FAIL"]
    lines.append(f"FAIL: {len(fails)}")
    lines += [f"  {node} {row['id']} {row['title']}: {row['detail']}" for node, row in fails]
    return "\n".join(lines), fails


def test_every_node_passes_every_check_that_applies(reports, inventory):
    text, fails = table(reports)
    print("\n" + text)
    for node, report in reports.items():
        failed = [f"{row['id']}: {row['detail']}" for row in report["checks"] if row["result"] == "FAIL"]
        record("cis", node=node, counts=report["counts"]["total"], fails=failed)
        assert report["source"] == "live"
        # every component of the node was found running
        assert all(report["processes"].values()), (node, report["processes"])
    assert not fails, text


def test_each_node_reports_the_sections_of_its_roles(reports, inventory):
    for node, report in reports.items():
        roles = inventory[node]["roles"]
        want = {"4"} | ({"1", "3"} if "master" in roles else set()) | ({"2"} if "etcd" in roles else set())
        got = set(report["counts"]) - {"total", "5"}
        assert got == want, (node, roles, sorted(report["counts"]))
    # section 5 (cluster policies) on the CA minion only
    assert sum("5" in r["counts"] for r in reports.values()) == 1
