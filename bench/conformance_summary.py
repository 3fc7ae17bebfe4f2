#!/usr/bin/env python3
"""
Conformance summary: what a run of the upstream conformance suite (e2e.test, focus [Conformance]) said about every
[Conformance] test of the release, by SIG: passed, failed, not runnable here (with the limit that stops it), not run.

Reads the release's test list (test/conformance/testdata/conformance.yaml: the full name of each test and its file),
the JUnit files e2e.test wrote (junit_*.xml in the report directory) and the lab's plan (tests/lab/conformance.json:
the tests that cannot pass on this machine, each with its reason). Writes into the report directory:

  - junit_conformance.xml: one JUnit suite holding every [Conformance] test of the release -- the ones that ran as
    e2e.test reported them (time, failure text), the not-runnable ones as skipped with their reason, the ones outside
    this run's focus as skipped "not run";
  - summary.json: the counts, by SIG and in all, and per test its outcome, time and (failed / not runnable) reason;
  - summary.md: the table by SIG, then every failed and every not-runnable test with its reason.

and prints the table. Exit code 1 when a test failed, else 0. The SIG of a test is its [sig-*] tag; 1.20's
"[k8s.io]" tests (test/e2e/common: pods, probes, volumes, lifecycle) are SIG Node's.

Usage:  .venv/bin/python bench/conformance_summary.py --report-dir DIR --conformance-yaml FILE
            [--plan tests/lab/conformance.json] [--title TEXT] [--suggest-fast BUDGET [--fast-longest SECONDS]]

--suggest-fast prints the CI subset the run measured (suggest_fast()) instead of the table.
"""

import argparse
import collections
import glob
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

import yaml

PLAN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "lab", "conformance.json")
OUTCOMES = ("passed", "failed", "not runnable here", "not run")


def load_tests(path):
    """[(full name, file)] of conformance.yaml, in its order."""
    with open(path) as fh:
        return [(t["codename"], t.get("file", "")) for t in yaml.safe_load(fh)]


def sig_of(name):
    m = re.search(r"\[(sig-[a-z-]+)\]", name)
    return m.group(1) if m else "sig-node"


def read_junit(report_dir):
    """{test name: (status, seconds, message)} of every junit_*.xml e2e.test wrote (not ours); status is passed,
    failed or skipped. A test reported by several files (parallel ginkgo nodes, or pieces run into one directory)
    keeps its non-skipped result, the latest written when it ran more than once (a rerun counts)."""
    results = {}
    paths = glob.glob(os.path.join(report_dir, "junit_*.xml"))
    for path in sorted(paths, key=lambda p: (os.stat(p).st_mtime, p)):
        if os.path.basename(path) == "junit_conformance.xml":
            continue
        for case in ET.parse(path).getroot().iter("testcase"):
            name = case.get("name", "")
            seconds = float(case.get("time") or 0)
            failure = case.find("failure")
            if failure is None:
                failure = case.find("error")
            if failure is not None:
                status, message = "failed", (failure.get("message") or failure.text or "").strip()
            elif case.find("skipped") is not None:
                status, message = "skipped", ""
            else:
                status, message = "passed", ""
            if name not in results or status != "skipped":
                results[name] = (status, seconds, message)
    return results


def classify(tests, junit, plan):
    """Per conformance test: {name, sig, file, outcome, seconds, reason}."""
    not_runnable = {e["test"]: e["reason"] for e in plan.get("not_runnable", [])}
    rows = []
    for name, path in tests:
        status, seconds, message = junit.get(name, ("missing", 0.0, ""))
        if status == "passed":
            outcome, reason = "passed", ""
        elif name in not_runnable:  # skipped, or run anyway (--all) and failed
            outcome, reason = "not runnable here", not_runnable[name]
            if status == "failed":
                reason += f" (run anyway, failed: {first_line(message)})"
        elif status == "failed":
            outcome, reason = "failed", first_line(message)
        else:
            outcome, reason = "not run", "outside this run's focus" if status == "skipped" else "not in the report"
        rows.append(
            {"name": name, "sig": sig_of(name), "file": path, "outcome": outcome, "seconds": seconds, "reason": reason}
        )
    return rows


def first_line(text):
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return "(no failure message)"


def counts(rows):
    by_sig = collections.OrderedDict()
    for r in sorted(rows, key=lambda r: r["sig"]):
        c = by_sig.setdefault(r["sig"], dict.fromkeys(("tests",) + OUTCOMES, 0))
        c["tests"] += 1
        c[r["outcome"]] += 1
    total = dict.fromkeys(("tests",) + OUTCOMES, 0)
    for c in by_sig.values():
        for k in total:
            total[k] += c[k]
    return by_sig, total


def table(by_sig, total):
    head = ["SIG", "tests", *OUTCOMES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sig, c in list(by_sig.items()) + [("all", total)]:
        cells = [f"**{sig}**" if sig == "all" else sig] + [str(c[k]) for k in ("tests",) + OUTCOMES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_junit(path, rows):
    suite = ET.Element(
        "testsuite",
        name="Kubernetes conformance (kubesalt lab)",
        tests=str(len(rows)),
        failures=str(sum(r["outcome"] == "failed" for r in rows)),
        skipped=str(sum(r["outcome"] in ("not runnable here", "not run") for r in rows)),
        time=f"{sum(r['seconds'] for r in rows):.1f}",
    )
    for r in rows:
        case = ET.SubElement(suite, "testcase", name=r["name"], classname=r["sig"], time=f"{r['seconds']:.1f}")
        if r["outcome"] == "failed":
            ET.SubElement(case, "failure", message=r["reason"]).text = r["reason"]
        elif r["outcome"] == "not runnable here":
            ET.SubElement(case, "skipped", message="not runnable here: " + r["reason"])
        elif r["outcome"] == "not run":
            ET.SubElement(case, "skipped", message="not run: " + r["reason"])
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def markdown(title, by_sig, total, rows):
    out = [f"# {title}", "", table(by_sig, total), ""]
    for outcome in ("failed", "not runnable here"):
        chosen = [r for r in rows if r["outcome"] == outcome]
        if chosen:
            out += [f"## {outcome} ({len(chosen)})", ""]
            out += [f"- `{r['name']}`: {r['reason']}" for r in chosen]
            out.append("")
    return "\n".join(out)


def summarize(report_dir, conformance_yaml, plan_path=PLAN, title="Conformance"):
    """Write the three files; return (rows, by_sig, total)."""
    with open(plan_path) as fh:
        plan = json.load(fh)
    tests = load_tests(conformance_yaml)
    names = {n for n, _ in tests}
    stale = [e["test"] for e in plan.get("not_runnable", []) if e["test"] not in names]
    if stale:
        raise SystemExit(f"{plan_path}: not_runnable names tests that are not in {conformance_yaml}: {stale}")
    rows = classify(tests, read_junit(report_dir), plan)
    by_sig, total = counts(rows)
    write_junit(os.path.join(report_dir, "junit_conformance.xml"), rows)
    with open(os.path.join(report_dir, "summary.json"), "w") as fh:
        json.dump({"title": title, "total": total, "by_sig": by_sig, "tests": rows}, fh, indent=1)
    with open(os.path.join(report_dir, "summary.md"), "w") as fh:
        fh.write(markdown(title, by_sig, total, rows))
    return rows, by_sig, total


def suggest_fast(rows, budget, longest):
    """The CI subset a run measured: passed tests, not [Serial], each within ``longest`` seconds, taken fastest first
    in turn from each SIG (every SIG is covered before any gets a second test) while their summed time stays within
    ``budget`` seconds. Names in conformance.yaml's order."""
    pools = collections.OrderedDict()
    for r in sorted(rows, key=lambda r: (r["seconds"], r["name"])):
        if r["outcome"] == "passed" and "[Serial]" not in r["name"] and r["seconds"] <= longest:
            pools.setdefault(r["sig"], []).append(r)
    chosen, spent = set(), 0.0
    while any(pools.values()):
        for sig in sorted(pools):
            if pools[sig]:
                r = pools[sig].pop(0)
                if spent + r["seconds"] > budget:
                    pools[sig] = []
                    continue
                chosen.add(r["name"])
                spent += r["seconds"]
    return [r["name"] for r in rows if r["name"] in chosen]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("--report-dir", required=True)
    p.add_argument("--conformance-yaml", required=True)
    p.add_argument("--plan", default=PLAN)
    p.add_argument("--title", default="Conformance")
    p.add_argument(
        "--suggest-fast",
        type=float,
        metavar="BUDGET",
        help="print the CI subset this run measured (conformance.json: fast): summed test time within BUDGET seconds",
    )
    p.add_argument("--fast-longest", type=float, default=20.0, help="with --suggest-fast: longest test, seconds")
    p.add_argument(
        "--expected",
        help="a JSON list of the tests this run was asked to run: each one without a result in the JUnit files fails"
        " the summary (a run whose reports went missing must not pass as 'nothing failed')",
    )
    args = p.parse_args(argv)
    rows, by_sig, total = summarize(args.report_dir, args.conformance_yaml, args.plan, args.title)
    if args.suggest_fast is not None:
        fast = suggest_fast(rows, args.suggest_fast, args.fast_longest)
        print(json.dumps(fast, indent=1))
        return 0
    print(table(by_sig, total))
    for r in rows:
        if r["outcome"] == "failed":
            print(f"FAILED  {r['name']}: {r['reason']}")
    missing = []
    if args.expected:
        with open(args.expected) as fh:
            asked = json.load(fh)
        outcome = {r["name"]: r["outcome"] for r in rows}
        missing = [n for n in asked if outcome.get(n) in (None, "not run")]
        for name in missing:
            print(f"NO RESULT  {name}: asked for, but no JUnit file has its result")
    print(f"report: {args.report_dir}/summary.md, {args.report_dir}/junit_conformance.xml")
    return 1 if total["failed"] or missing else 0


if __name__ == "__main__":
    sys.exit(main())
