"""The conformance run's own tools (make lab-conformance), without a lab: the summary's classification of every
[Conformance] test (bench/conformance_summary.py, on JUnit files shaped like e2e.test's), the exact-name focus/skip
expressions given to ginkgo, the OCI archives with shared layers the test images are written as (read back the way
an OCI image layout is read: index -> manifest -> config + layers, digests checked), and the lab pillar with the
conformance images, validated by kubesalt's own schema."""

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET

import pytest
import yaml

from tests.lab.labctl import conformance, master
from tests.unit.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "lab" / "build"))
import conformance_summary  # noqa: E402
import oci_image  # noqa: E402
from artifacts import KUBE_BINS  # noqa: E402

TESTS = [
    ("[sig-apps] Deployment should run the lifecycle of a Deployment [Conformance]", "test/e2e/apps/deployment.go"),
    ("[sig-network] DNS should provide DNS for the cluster  [Conformance]", "test/e2e/network/dns.go"),
    ("[k8s.io] Pods should get a host IP [NodeConformance] [Conformance]", "test/e2e/common/pods.go"),
    ("[sig-network] Services should serve a basic endpoint from pods  [Conformance]", "test/e2e/network/service.go"),
    (
        "[sig-storage] Secrets should be consumable from pods in volume [NodeConformance] [Conformance]",
        "test/e2e/common/secrets_volume.go",
    ),
]


def _junit(path, cases):
    """A JUnit file as e2e.test writes it: one testsuite, a testcase per spec, <failure>/<skipped> children."""
    suite = ET.Element("testsuite", name="Kubernetes e2e suite", tests=str(len(cases)))
    for name, status, seconds in cases:
        case = ET.SubElement(suite, "testcase", name=name, classname="Kubernetes e2e suite", time=str(seconds))
        if status == "failed":
            failure = ET.SubElement(case, "failure", type="Failure")
            failure.text = "\n/go/src/k8s.io/kubernetes/test/e2e/network/service.go:1234\nTimed out after 120s\n"
        elif status == "skipped":
            ET.SubElement(case, "skipped")
    ET.ElementTree(suite).write(path)


@pytest.fixture
def report(tmp_path):
    (tmp_path / "conformance.yaml").write_text(
        yaml.safe_dump([{"testname": f"t{i}", "codename": n, "file": f} for i, (n, f) in enumerate(TESTS)])
    )
    plan = {"not_runnable": [{"test": TESTS[1][0], "reason": "no cluster DNS"}], "fast": []}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "out").mkdir()
    return tmp_path


def _summarize(report):
    return conformance_summary.summarize(
        str(report / "out"), str(report / "conformance.yaml"), str(report / "plan.json"), title="test"
    )


def test_summary_puts_every_conformance_test_in_one_outcome_by_sig(report):
    # two JUnit files (parallel ginkgo nodes): a spec skipped on one node and run on the other counts as run
    _junit(
        report / "out" / "junit_01.xml",
        [(TESTS[0][0], "passed", 12.5), (TESTS[2][0], "skipped", 0), (TESTS[1][0], "skipped", 0)],
    )
    _junit(report / "out" / "junit_02.xml", [(TESTS[2][0], "passed", 3.0), (TESTS[3][0], "failed", 121.0)])
    rows, by_sig, total = _summarize(report)

    outcome = {r["name"]: (r["outcome"], r["reason"]) for r in rows}
    assert outcome[TESTS[0][0]] == ("passed", "")
    assert outcome[TESTS[1][0]] == ("not runnable here", "no cluster DNS")
    assert outcome[TESTS[2][0]] == ("passed", "")
    assert outcome[TESTS[3][0]][0] == "failed"
    assert "service.go:1234" in outcome[TESTS[3][0]][1]  # the first line of e2e.test's failure text
    assert outcome[TESTS[4][0]] == ("not run", "not in the report")
    assert total == {"tests": 5, "passed": 2, "failed": 1, "not runnable here": 1, "not run": 1}
    # 1.20's [k8s.io] tests are SIG Node's
    assert by_sig["sig-node"]["passed"] == 1 and by_sig["sig-network"]["failed"] == 1
    assert by_sig["sig-network"]["not runnable here"] == 1

    junit = ET.parse(report / "out" / "junit_conformance.xml").getroot()
    assert junit.get("tests") == "5" and junit.get("failures") == "1" and junit.get("skipped") == "2"
    cases = {c.get("name"): c for c in junit.iter("testcase")}
    assert set(cases) == {n for n, _ in TESTS}
    assert cases[TESTS[1][0]].find("skipped").get("message") == "not runnable here: no cluster DNS"
    assert cases[TESTS[3][0]].find("failure") is not None
    markdown = (report / "out" / "summary.md").read_text()
    assert "| **all** | 5 | 2 | 1 | 1 | 1 |" in markdown
    assert f"- `{TESTS[1][0]}`: no cluster DNS" in markdown
    assert json.loads((report / "out" / "summary.json").read_text())["total"] == total


def test_a_run_whose_reports_went_missing_fails_the_summary(report, capsys):
    # every asked-for test passed in the files found, but one asked-for test has no result at all (its JUnit file was
    # written elsewhere): that is a failure, not "nothing failed"
    _junit(report / "out" / "junit_01.xml", [(TESTS[0][0], "passed", 1.0), (TESTS[2][0], "passed", 1.0)])
    args = [
        f"--report-dir={report / 'out'}",
        f"--conformance-yaml={report / 'conformance.yaml'}",
        f"--plan={report / 'plan.json'}",
    ]
    (report / "asked.json").write_text(json.dumps([TESTS[0][0], TESTS[2][0]]))
    assert conformance_summary.main([*args, f"--expected={report / 'asked.json'}"]) == 0
    (report / "asked.json").write_text(json.dumps([TESTS[0][0], TESTS[2][0], TESTS[4][0]]))
    assert conformance_summary.main([*args, f"--expected={report / 'asked.json'}"]) == 1
    assert f"NO RESULT  {TESTS[4][0]}" in capsys.readouterr().out


def test_a_not_runnable_test_run_anyway_stays_not_runnable_and_keeps_its_failure(report):
    _junit(report / "out" / "junit_01.xml", [(TESTS[1][0], "failed", 600.0)])
    rows, _, total = _summarize(report)
    row = next(r for r in rows if r["name"] == TESTS[1][0])
    assert row["outcome"] == "not runnable here"
    assert row["reason"].startswith("no cluster DNS (run anyway, failed: ")
    assert total["failed"] == 0


def test_the_summary_exit_code_says_whether_a_runnable_test_failed(report, capsys):
    argv = [
        "--report-dir",
        str(report / "out"),
        "--conformance-yaml",
        str(report / "conformance.yaml"),
        "--plan",
        str(report / "plan.json"),
    ]
    _junit(report / "out" / "junit_01.xml", [(TESTS[0][0], "passed", 1.0)])
    assert conformance_summary.main(argv) == 0
    _junit(report / "out" / "junit_01.xml", [(TESTS[0][0], "failed", 1.0)])
    assert conformance_summary.main(argv) == 1
    assert f"FAILED  {TESTS[0][0]}" in capsys.readouterr().out


def test_a_plan_naming_a_test_the_release_does_not_have_is_refused(report):
    (report / "plan.json").write_text(json.dumps({"not_runnable": [{"test": "[sig-x] no such test", "reason": "r"}]}))
    with pytest.raises(SystemExit, match=r"no such test"):
        _summarize(report)


def test_the_lab_plan_is_well_formed():
    plan = conformance.plan()
    names = [e["test"] for e in plan["not_runnable"]]
    assert len(names) == len(set(names))
    assert all(e["reason"].strip() and "[Conformance]" in e["test"] for e in plan["not_runnable"])
    assert not set(names) & set(plan["fast"]), "a not-runnable test cannot be in the CI subset"
    assert all("[Conformance]" in n for n in plan["fast"])


def test_exact_focus_matches_the_named_tests_and_nothing_else():
    names = [n for n, _ in TESTS] + ["[sig-cli] Kubectl client Kubectl run pod should create a pod (v1.0) [x.y]"]
    expr = conformance.exact(names[:2] + names[-1:])
    # RE2 (ginkgo's) and Python agree on this syntax: anchors, groups, alternation, backslash-escaped punctuation
    assert re.search(r"\\[^\\.+*?()|\[\]{}^$]", expr) is None, "only RE2 metacharacters are escaped"
    matched = [n for n in names if re.search(expr, conformance.ginkgo_text(n))]
    assert matched == names[:2] + names[-1:]
    assert not re.search(expr, conformance.ginkgo_text(names[0] + " [Slow]"))
    assert not re.search(expr, conformance.ginkgo_text("x" + names[0]))


def _read_layout(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    index = json.loads(files["index.json"])

    def blob(desc):
        raw = files["blobs/sha256/" + desc["digest"].split(":", 1)[1]]
        assert hashlib.sha256(raw).hexdigest() == desc["digest"].split(":", 1)[1] and len(raw) == desc["size"]
        return raw

    (entry,) = index["manifests"]
    manifest = json.loads(blob(entry))
    config = json.loads(blob(manifest["config"]))
    layers = [gzip.decompress(blob(d)) for d in manifest["layers"]]
    return entry, config, layers


def test_an_image_of_several_layers_is_a_valid_oci_layout_and_shares_its_lower_layer(tmp_path):
    (tmp_path / "sh").write_bytes(b"\x7fELF fake shell")
    base = oci_image.layer_tar([(str(tmp_path / "sh"), "bin/sh", 0o755)], dirs=[("tmp", 0o1777)])
    top = oci_image.layer_tar([(b"setuid", "usr/local/bin/nnp", 0o4755)], symlinks=[("bin/nnp", "/usr/local/bin/nnp")])
    ref = "gcr.io/kubernetes-e2e-test-images/nonewprivs:1.0"
    data, digest = oci_image.image_archive(ref, [base, top], cmd=["nnp"], workdir="/usr/local")
    entry, config, layers = _read_layout(data)

    assert entry["digest"] == digest
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref}
    assert layers == [base, top]  # lowest first
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(x).hexdigest() for x in (base, top)]
    assert len(config["history"]) == 2
    assert config["config"]["Cmd"] == ["nnp"] and config["config"]["WorkingDir"] == "/usr/local"
    with tarfile.open(fileobj=io.BytesIO(layers[1])) as tar:
        nnp = tar.getmember("usr/local/bin/nnp")
        assert nnp.mode == 0o4755 and nnp.uid == 0 and tar.extractfile(nnp).read() == b"setuid"
        assert tar.getmember("bin/nnp").issym()
    # same inputs, same bytes; another image on the same base carries the same base blob
    assert oci_image.image_archive(ref, [base, top], cmd=["nnp"], workdir="/usr/local") == (data, digest)
    other, _ = oci_image.image_archive("docker.io/library/busybox:1.29", [base], cmd=["sh"])
    assert _read_layout(other)[2] == [base]
    # a single layer is written as before the layer lists existed (the lab mirror's digests do not move)
    single, _ = oci_image.image_archive(ref, base, cmd=["sh"])
    assert single == oci_image.image_archive(ref, [base], cmd=["sh"])[0]


def test_the_lab_pillar_with_the_conformance_images_is_valid_kubesalt_pillar(make_settings, k8s_module):
    lab = {
        "nodes": {
            "master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"},
            "worker01": {"roles": ["worker"], "ip": "10.240.0.21"},
        },
        "extra_images": [
            {
                "name": "k8s.gcr.io/e2e-test-images/agnhost:2.21",
                "sha256": "a" * 64,
                "url": "https://kubesalt.lab/images/conformance/agnhost-2.21.tar",
                "path": "kubesalt.lab/images/conformance/agnhost-2.21.tar",
                "src": "/cache/agnhost.tar",
            }
        ],
    }
    manifest = {
        "versions": {
            "kubernetes": "1.20.2",
            "etcd": "3.5.16",
            "containerd": "1.7.24",
            "runc": "1.3.6",
            "cni_plugins": "1.9.1",
        },
        # every binary the lab pins (artifacts.py)
        "files": {
            **{b: {"version": "1.20.2", "sha256": "b" * 64} for b in KUBE_BINS},
            "etcd": {"version": "3.5.16", "sha256": "d" * 64},
            "containerd": {"version": "1.7.24", "sha256": "e" * 64},
            "runc": {"version": "1.3.6", "sha256": "f" * 64},
            "cni-plugins": {"version": "1.9.1", "sha256": "0" * 64},
        },
        "images": [
            {"name": "k8s.gcr.io/pause:3.2", "url": "https://kubesalt.lab/images/pause-3.2.tar", "sha256": "c" * 64}
        ],
    }
    pillar = master.pillar(lab, manifest)
    images = pillar["container_runtime"]["images"]
    assert [i["name"] for i in images] == ["k8s.gcr.io/pause:3.2", "k8s.gcr.io/e2e-test-images/agnhost:2.21"]
    assert all(set(i) == {"name", "url", "sha256"} for i in images)  # the cache path stays on the host
    result = k8s_module.check(make_settings(pillar))
    assert result["errors"] == []


def test_suggest_fast_takes_the_fastest_passed_tests_of_every_sig_within_the_budget():
    def row(name, sig, outcome, seconds):
        return {"name": name, "sig": sig, "outcome": outcome, "seconds": seconds}

    rows = [
        row("[sig-apps] a1 [Conformance]", "sig-apps", "passed", 4.0),
        row("[sig-apps] a2 [Conformance]", "sig-apps", "passed", 2.0),
        row("[sig-apps] a3 [Serial] [Conformance]", "sig-apps", "passed", 1.0),  # [Serial]: never in the subset
        row("[sig-node] n1 [Conformance]", "sig-node", "passed", 6.0),
        row("[sig-node] n2 [Conformance]", "sig-node", "failed", 1.0),  # failed: never
        row("[sig-node] n3 [Conformance]", "sig-node", "passed", 30.0),  # longer than the longest allowed
        row("[sig-cli] c1 [Conformance]", "sig-cli", "not runnable here", 0.0),
        row("[sig-storage] s1 [Conformance]", "sig-storage", "passed", 3.0),
        row("[sig-storage] s2 [Conformance]", "sig-storage", "passed", 3.5),
    ]
    # round 1: apps a2 (2), node n1 (6), storage s1 (3) = 11; round 2: apps a1 (15), storage s2 (18.5)
    assert conformance_summary.suggest_fast(rows, 20, 20) == [
        "[sig-apps] a1 [Conformance]",
        "[sig-apps] a2 [Conformance]",
        "[sig-node] n1 [Conformance]",
        "[sig-storage] s1 [Conformance]",
        "[sig-storage] s2 [Conformance]",
    ]
    # a small budget: one test per SIG at most, the fastest, while they fit
    assert conformance_summary.suggest_fast(rows, 5, 20) == [
        "[sig-apps] a2 [Conformance]",
        "[sig-storage] s1 [Conformance]",
    ]
    assert conformance_summary.suggest_fast(rows, 100, 5) == [
        "[sig-apps] a1 [Conformance]",
        "[sig-apps] a2 [Conformance]",
        "[sig-storage] s1 [Conformance]",
        "[sig-storage] s2 [Conformance]",
    ]


def test_pieces_run_into_one_report_directory_add_up_and_a_rerun_counts(report):
    first, rerun = report / "out" / "junit_e2e-200000-01.xml", report / "out" / "junit_e2e-201500-01.xml"
    _junit(first, [(TESTS[0][0], "failed", 40.0), (TESTS[2][0], "passed", 3.0), (TESTS[4][0], "skipped", 0)])
    _junit(rerun, [(TESTS[0][0], "passed", 11.0), (TESTS[2][0], "skipped", 0), (TESTS[3][0], "passed", 5.0)])
    os.utime(first, (1_000_000, 1_000_000))  # written first
    rows, _, total = _summarize(report)
    outcome = {r["name"]: (r["outcome"], r["seconds"]) for r in rows}
    assert outcome[TESTS[0][0]] == ("passed", 11.0)  # the rerun's result, not the first piece's failure
    assert outcome[TESTS[2][0]] == ("passed", 3.0)  # skipped by the later piece: the earlier result stays
    assert outcome[TESTS[3][0]] == ("passed", 5.0)
    assert outcome[TESTS[4][0]][0] == "not run"
    assert total["passed"] == 3 and total["failed"] == 0


def test_a_parallel_run_splits_any_focus_into_its_non_serial_and_serial_tests(tmp_path):
    names = [
        "[sig-apps] Daemon set [Serial] should rollback without unnecessary restarts [Conformance]",
        "[sig-apps] Deployment deployment should support rollover [Conformance]",
        "[sig-cli] Kubectl client Kubectl version should check is all data is printed  [Conformance]",
        "[sig-network] DNS should provide DNS for the cluster  [Conformance]",
    ]
    skip = conformance.exact(names[3:])

    def flags(argv):
        return dict(a.split("=", 1) for a in argv if a.startswith("--ginkgo.") and "=" in a)

    (par, argv_p), (ser, argv_s) = conformance.runs(str(tmp_path), r"\[sig-apps\]", skip, [], 3, names, "201500")
    assert (par, ser) == ("parallel", "serial")
    assert argv_p[1] == "-nodes=3" and "--report-prefix=parallel-201500-" in argv_p
    p, s = flags(argv_p), flags(argv_s)

    def ran(f):
        texts = {n: conformance.ginkgo_text(n) for n in names}
        return [
            n for n in names if re.search(f["--ginkgo.focus"], texts[n]) and not re.search(f["--ginkgo.skip"], texts[n])
        ]

    ran_parallel, ran_serial = ran(p), ran(s)
    assert ran_parallel == names[1:2] and ran_serial == names[:1]
    # a focus with no [Serial] test: no serial run; one at a time: a single e2e.test run
    assert [label for label, _ in conformance.runs(str(tmp_path), r"\[sig-cli\]", skip, [], 3, names, "1")] == [
        "parallel"
    ]
    ((label, argv),) = conformance.runs(str(tmp_path), r"\[Conformance\]", skip, [], 1, names, "1")
    assert label == "e2e" and "--report-prefix=e2e-1-" in argv and flags(argv)["--ginkgo.skip"] == skip


E2E_TEST = os.path.join(conformance.E2E_DIR, "bin", "e2e.test")


def _dry_run(tmp_path, argv):
    """The specs a real e2e.test (the lab's e2e build) selects with these flags: ginkgo's --dryRun walks the whole
    suite, applies focus and skip exactly as a run does, and runs nothing (no cluster needed)."""
    res = subprocess.run(
        [argv[0], "--ginkgo.dryRun", *[a for a in argv[1:] if a.startswith(("--ginkgo.focus", "--ginkgo.skip"))]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-2000:]
    return sorted(json.loads(m)["msg"][len("PASSED ") :] for m in re.findall(r'(\{"msg":"PASSED .*?\})\n', res.stdout))


@pytest.mark.skipif(
    not os.path.exists(E2E_TEST), reason=f"no e2e build in {conformance.E2E_DIR} (tests/lab/build/kubernetes.sh e2e)"
)
def test_the_real_e2e_test_runs_exactly_the_planned_tests(tmp_path):
    # ginkgo matches focus/skip against "Kubernetes e2e suite [Top Level] <name>": a ^-anchored name list selected
    # nothing, so the not-runnable tests still ran and the CI subset ran no test at all
    names = conformance.release_tests()
    the_plan = conformance.plan()
    not_runnable = {e["test"] for e in the_plan["not_runnable"]}
    skip = conformance.exact(not_runnable)

    ((_, argv),) = conformance.runs(str(tmp_path), r"\[Conformance\]", skip, [], 1, names, "1")
    assert _dry_run(tmp_path, argv) == sorted(set(names) - not_runnable)

    ((_, argv),) = conformance.runs(str(tmp_path), conformance.exact(the_plan["fast"]), skip, [], 1, names, "1")
    assert _dry_run(tmp_path, argv) == sorted(the_plan["fast"])

    # --parallel on a piece: the ginkgo run (its e2e.test flags) and the serial run split the piece's runnable tests
    # (a piece is the conformance tests its --focus matches: [sig-apps] alone selects ~130 specs of the whole suite)
    apps_piece = conformance.piece(r"\[sig-apps\]", names)
    (_, par), (_, ser) = conformance.runs(str(tmp_path), apps_piece, skip, [], 2, names, "1")
    e2e_flags = par[par.index("--") + 1 :]
    apps = sorted(n for n in names if n.startswith("[sig-apps]") and n not in not_runnable)
    parallel, serial = _dry_run(tmp_path, [E2E_TEST, *e2e_flags]), _dry_run(tmp_path, ser)
    assert sorted(parallel + serial) == apps and serial and all("[Serial]" in n for n in serial)
