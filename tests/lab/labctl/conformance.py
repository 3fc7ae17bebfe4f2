"""`make lab-conformance` (tests/lab/lab.sh conformance): the upstream Kubernetes conformance suite -- Kubernetes
1.20.2's e2e.test with focus [Conformance], what Sonobuoy runs for CNCF certification -- against the running lab.

  1. builds (cached): e2e.test, ginkgo, agnhost, sample-apiserver, nonewprivs from the lab's patched Kubernetes tree
     (tests/lab/build/kubernetes.sh e2e), then the images the tests start, under the names the suite uses
     (tests/lab/build/conformance_images.py);
  2. preload through the formula's own image preload: the archives are served by the lab mirror, the lab's pillar
     gains them in k8s:container_runtime:images (kept in lab.json as the lab's extra images, so a later `make lab`
     writes the same pillar), and `state.apply k8s.runtime` on every node imports them into containerd; every node
     is then checked to hold every image;
  3. the run: e2e.test on the host with the lab's admin kubeconfig and the lab's kubectl. CoreDNS cannot run here (no
     image): its Deployment is scaled to 0 for the run and back afterwards, or its never-ready pods would hold the
     suite's start-up check (every kube-system pod running and ready) until it fails. The tests
     tests/lab/conformance.json lists as not runnable here are skipped (--all runs them too);
  4. the report: bench/conformance_summary.py writes junit_conformance.xml, summary.json and summary.md into the
     report directory (default build/conformance/<date>-<time>, and build/conformance/latest) and prints the table
     by SIG.

The lab's own lock is held while the pillar and nodes change (step 2), not during the run. Exit code: 0 when no
runnable test failed.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import time

from . import builds, master, nodes
from .common import BUILD, CACHE, HERE, K8S_VERSION, REPO, STATE, VENV, die, phase, run, say, write
from .inventory import load_lab, save_lab

PLAN_FILE = os.path.join(HERE, "conformance.json")
E2E_DIR = os.path.join(CACHE, "kubernetes", f"{K8S_VERSION}-e2e")
ADMIN = os.path.join(STATE, "admin.conf")
SUMMARY = os.path.join(REPO, "bench", "conformance_summary.py")
GO_RE_SPECIAL = set("\\.+*?()|[]{}^$")


def plan():
    with open(PLAN_FILE) as fh:
        return json.load(fh)


# What ginkgo (v1, vendored by 1.20.2) matches --ginkgo.focus/--ginkgo.skip against is not the test's full name (the
# JUnit/conformance.yaml name) but "<suite description> <container texts> <test text>", and the containers start with
# ginkgo's root, "[Top Level]" (vendor/github.com/onsi/ginkgo/internal/spec/specs.go toMatch, spec.go
# ConcatenatedString, suite.go): "Kubernetes e2e suite [Top Level] [sig-apps] Deployment ...". An expression anchored
# at the name's start (^) matches no test at all.
GINKGO_PREFIX = "Kubernetes e2e suite [Top Level] "


def ginkgo_text(name):
    """The string ginkgo matches focus and skip expressions against, for the test called ``name``."""
    return GINKGO_PREFIX + name


def exact(names):
    """A Go (RE2) regular expression matching exactly the tests called ``names`` (full names, as in conformance.yaml)
    and no other, as ginkgo's focus/skip: anchored after the "[Top Level] " ginkgo puts before every name."""
    alternatives = "|".join("".join("\\" + c if c in GO_RE_SPECIAL else c for c in n) for n in sorted(names))
    return "\\[Top Level\\] (" + alternatives + ")$"


# -- builds ------------------------------------------------------------------------------------------------------------
def build_e2e():
    run(["bash", os.path.join(BUILD, "kubernetes.sh"), "e2e"])
    return E2E_DIR


def build_images():
    res = run(
        [
            "/usr/bin/python3",
            os.path.join(BUILD, "conformance_images.py"),
            "--cache",
            CACHE,
            "--kubernetes",
            K8S_VERSION,
        ],
        capture=True,
    )
    with open(res.stdout.strip().splitlines()[-1]) as fh:
        return json.load(fh)


# -- the images on the nodes -------------------------------------------------------------------------------------------
def place_extra_images(lab, mirror_dir):
    """Serve the lab's extra images from the mirror directory (hard links to their cached archives). An archive that
    is gone from the cache drops its image from the lab (and so from the pillar); containerd keeps what it imported."""
    kept = []
    for image in lab.get("extra_images", []):
        src = image["src"]
        if not os.path.exists(src):
            say(f"  {image['name']}: {src} is gone (cache cleared?); no longer in the pillar")
            continue
        dest = os.path.join(mirror_dir, image["path"])
        if not os.path.exists(dest):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            try:
                os.link(src, dest)
            except OSError:
                shutil.copyfile(src, dest)
        kept.append(image)
    if lab.get("extra_images") is not None:
        lab["extra_images"] = kept


def node_images(node_id, ctr):
    res = nodes.nsenter(node_id, [ctr, "--namespace", "k8s.io", "images", "list", "--quiet"], check=False)
    return set((res.stdout or "").split())


def preload(lab, index):
    """Steps 2: mirror, pillar, `state.apply k8s.runtime` on every node, check."""
    manifest = builds.build_artifacts(builds.profile_name(lab))
    lab["extra_images"] = [
        {
            "name": i["name"],
            "url": i["url"],
            "sha256": i["sha256"],
            "path": i["path"],
            "src": os.path.join(index["www"], i["path"]),
        }
        for i in index["images"]
    ]
    place_extra_images(lab, manifest["mirror_dir"])
    save_lab(lab)
    ids = sorted(lab["nodes"])
    if master.write_pillar(lab, manifest):
        say("  pillar: k8s:container_runtime:images gained the conformance images")
        master.salt("-L", ",".join(ids), "saltutil.refresh_pillar", check=False)
    ret = master.salt_json("-L", ",".join(ids), "state.apply", "k8s.runtime", "--timeout=60", timeout=1800)
    for nid in ids:
        states = ret.get(nid)
        if not isinstance(states, dict):
            die(f"state.apply k8s.runtime on {nid}: {str(states)[:2000]}")
        failed = [(s.get("__id__"), s.get("comment")) for s in states.values() if s.get("result") is False]
        if failed:
            die(f"state.apply k8s.runtime on {nid} failed: {failed[:5]}")
        changed = sorted(s.get("__id__", "?") for s in states.values() if s.get("changes"))
        say(f"  {nid}: k8s.runtime {len(states)} states, {len(changed)} changed")
    wanted = {i["name"] for i in index["images"]}
    for nid in ids:
        missing = wanted - node_images(nid, "/usr/local/bin/ctr")
        if missing:
            die(f"{nid}: containerd lacks {sorted(missing)} after the preload")
    say(f"  every node holds the {len(wanted)} conformance images")


# -- the cluster during the run ----------------------------------------------------------------------------------------
def kubectl(*args, check=True):
    return run([builds.kubectl(), f"--kubeconfig={ADMIN}", *args], check=check, capture=True)


def dns_off():
    """Scale kube-system's CoreDNS Deployment to 0 when its pods are not ready (the lab has no CoreDNS image); return
    its former replica count (None: left alone). Any other kube-system pod that is not ready stops the run."""
    pods = json.loads(kubectl("-n", "kube-system", "get", "pods", "-o", "json").stdout)["items"]
    not_ready = [
        p
        for p in pods
        if p["status"].get("phase") != "Succeeded"
        and not any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]
    others = [p["metadata"]["name"] for p in not_ready if p["metadata"].get("labels", {}).get("k8s-app") != "kube-dns"]
    if others:
        die(f"kube-system pods not ready (not CoreDNS): {others}; the suite would not start")
    if not not_ready:
        return None
    res = kubectl("-n", "kube-system", "get", "deployment", "coredns", "-o", "jsonpath={.spec.replicas}", check=False)
    if res.returncode != 0:
        die(f"CoreDNS pods are not ready but there is no coredns Deployment: {res.stderr.strip()}")
    replicas = int(res.stdout or 0)
    say(f"  CoreDNS is not ready ({len(not_ready)} pods: no image here): scaled from {replicas} to 0 for the run")
    kubectl("-n", "kube-system", "scale", "deployment", "coredns", "--replicas=0")
    return replicas


def dns_restore(replicas):
    if replicas is not None:
        kubectl("-n", "kube-system", "scale", "deployment", "coredns", f"--replicas={replicas}", check=False)
        say(f"  CoreDNS scaled back to {replicas}")


def e2e_namespaces():
    """Namespaces the e2e framework made (it labels each e2e-run=<its run id>); it deletes each after its test."""
    return kubectl("get", "namespaces", "-l", "e2e-run", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()


# -- the run -----------------------------------------------------------------------------------------------------------
def e2e_flags(out, focus, skip, extra, prefix=""):
    """e2e.test's flags: the lab's admin kubeconfig and kubectl, reports into ``out`` (JUnit junit_<prefix>NN.xml)."""
    flags = [
        f"--kubeconfig={ADMIN}",
        "--provider=skeleton",
        f"--kubectl-path={builds.kubectl()}",
        f"--report-dir={out}",
        f"--report-prefix={prefix}",
        f"--e2e-output-dir={out}",
        "--disable-log-dump",
        "--system-pods-startup-timeout=5m",
        f"--ginkgo.focus={focus}",
        "--ginkgo.noColor",
        "--ginkgo.v",
    ]
    if skip:
        flags.append(f"--ginkgo.skip={skip}")
    return flags + list(extra)


def piece(expr, names):
    """A piece of the suite: the release's [Conformance] tests (``names``) whose ginkgo text ``expr`` matches, as an
    exact expression -- ``expr`` alone would also select e2e tests outside the conformance suite (``[sig-apps]``
    matches ~130 specs, 27 of them [Conformance])."""
    chosen = [n for n in names if re.search(expr, ginkgo_text(n))]
    if not chosen:
        die(f"--focus {expr} matches none of the {len(names)} [Conformance] tests")
    return exact(chosen)


def release_tests():
    """Full names of the release's [Conformance] tests (the e2e build's conformance.yaml; read by the venv's Python,
    which has PyYAML -- the host's may not)."""
    code = "import json, sys, yaml; print(json.dumps([t['codename'] for t in yaml.safe_load(open(sys.argv[1]))]))"
    res = run(
        [os.path.join(VENV, "bin", "python"), "-c", code, os.path.join(E2E_DIR, "conformance.yaml")], capture=True
    )
    return json.loads(res.stdout)


def asked(names, focus, skip):
    """The tests of ``names`` a run with these ginkgo ``focus`` and ``skip`` expressions runs."""
    skip_re = re.compile(skip) if skip else None
    return [n for n in names if re.search(focus, ginkgo_text(n)) and not (skip_re and skip_re.search(ginkgo_text(n)))]


def runs(out, focus, skip, extra, parallel, names, stamp):
    """[(label, argv)]: e2e.test alone, or (parallel > 1) ginkgo running ``parallel`` e2e.test processes on the tests
    of ``focus`` that are not [Serial], then e2e.test alone on its [Serial] ones -- when ``names`` (the release's
    tests) has a [Serial] test ``focus`` matches. RE2 has no "and": the serial run skips the non-[Serial] tests by
    their exact names. JUnit files are named by ``stamp`` too, so runs of pieces into one report directory add up."""
    e2e = os.path.join(E2E_DIR, "bin", "e2e.test")
    if parallel <= 1:
        return [("e2e", [e2e, *e2e_flags(out, focus, skip, extra, prefix=f"e2e-{stamp}-")])]
    ginkgo = os.path.join(E2E_DIR, "bin", "ginkgo")
    no_serial = f"({skip})|\\[Serial\\]" if skip else "\\[Serial\\]"
    out_runs = [
        (
            "parallel",
            [
                ginkgo,
                f"-nodes={parallel}",
                "-noColor",
                e2e,
                "--",
                *e2e_flags(out, focus, no_serial, extra, prefix=f"parallel-{stamp}-"),
            ],
        )
    ]
    serial = [n for n in asked(names, focus, skip) if "[Serial]" in n]
    if serial:
        not_serial = exact(n for n in names if "[Serial]" not in n)
        serial_skip = f"({skip})|{not_serial}" if skip else not_serial
        out_runs.append(("serial", [e2e, *e2e_flags(out, focus, serial_skip, extra, prefix=f"serial-{stamp}-")]))
    return out_runs


def lab_description(lab):
    masters = sum("master" in n["roles"] for n in lab["nodes"].values())
    return f"{masters} master{'s' * (masters != 1)} + {len(lab['nodes']) - masters} workers"


def cmd_conformance(args, lock):
    p = argparse.ArgumentParser(prog="lab.sh conformance", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--subset",
        choices=("all", "fast"),
        default="all",
        help="all [Conformance] tests (default) or the CI subset (tests/lab/conformance.json: fast)",
    )
    p.add_argument("--focus", help="a regular expression (Go syntax) on test names, instead of the subset")
    p.add_argument("--all", dest="run_all", action="store_true", help="run the not-runnable tests too")
    p.add_argument(
        "--out",
        help="report directory (default build/conformance/<date>-<time>); runs of pieces (--focus) into one directory"
        " add up in its report",
    )
    p.add_argument("--no-preload", action="store_true", help="skip builds and preload (images already on the nodes)")
    p.add_argument(
        "--parallel", type=int, default=1, help="N > 1: ginkgo runs N e2e.test at once, [Serial] tests after"
    )
    p.add_argument("e2e_args", nargs="*", help="after --: more e2e.test flags")
    opts = p.parse_args(args)

    lab = load_lab()
    if lab is None:
        die("no lab: run `make lab` first")
    if not os.path.exists(ADMIN):
        die(f"{ADMIN} is missing: the lab's orchestration has not finished")
    the_plan = plan()
    started = datetime.datetime.now()
    # absolute: ginkgo starts the parallel e2e.test processes in its own directory and e2e.test writes its JUnit
    # files relative to where it runs (a relative --out put them under the e2e build's bin/ and the report found none)
    out = os.path.abspath(opts.out or os.path.join(REPO, "build", "conformance", f"{started:%Y%m%d-%H%M%S}"))
    os.makedirs(out, exist_ok=True)
    if not opts.out:
        latest = os.path.join(REPO, "build", "conformance", "latest")
        if os.path.islink(latest) or not os.path.exists(latest):
            tmp = latest + ".tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(os.path.basename(out), tmp)
            os.replace(tmp, latest)

    if not opts.no_preload:
        with phase("conformance binaries (kubernetes.sh e2e: e2e.test, ginkgo, agnhost, ...)"):
            build_e2e()
        with phase("conformance images (conformance_images.py)"):
            index = build_images()
            for i in index["images"]:
                say(f"  {i['name']}: {i['size'] / 1048576:.1f} MiB ({i['from']})")
            for u in index["unavailable"]:
                say(f"  not made: {u['name']}: {u['why']}")
        with lock(), phase("preload through k8s:container_runtime:images (state.apply k8s.runtime on every node)"):
            lab = load_lab()
            preload(lab, index)

    if opts.focus:
        focus, what = piece(opts.focus, release_tests()), f"focus {opts.focus}"
    elif opts.subset == "fast":
        if not the_plan.get("fast"):
            die(f"{PLAN_FILE} has no fast subset")
        focus, what = exact(the_plan["fast"]), f"the fast subset ({len(the_plan['fast'])} tests)"
    else:
        focus, what = r"\[Conformance\]", "every [Conformance] test"
    skip = None if opts.run_all else exact(e["test"] for e in the_plan["not_runnable"])
    if skip:
        what += f" (the {len(the_plan['not_runnable'])} not runnable here skipped)"
    stamp = f"{started:%H%M%S}"
    names = release_tests()
    expected = asked(names, focus, skip)
    expected_file = os.path.join(out, f"expected-{stamp}.json")
    write(expected_file, json.dumps(expected, indent=1) + "\n")
    planned = runs(out, focus, skip, opts.e2e_args, opts.parallel, names, stamp)
    write(os.path.join(out, f"e2e-{stamp}.argv"), json.dumps(planned, indent=1) + "\n")
    before = set(e2e_namespaces())
    replicas = dns_off()
    t0 = time.monotonic()
    rc = None
    try:
        for label, argv in planned:
            how = f"{opts.parallel} in parallel, [Serial] tests apart" if opts.parallel > 1 else "one at a time"
            log = os.path.join(out, f"{label}-{stamp}.log")
            with phase(f"e2e.test ({label}): {what}, {how} (log: {log})"), open(log, "w") as fh:
                code = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=out).returncode
            rc = code if rc in (None, 0) else rc
    finally:
        dns_restore(replicas)
    seconds = time.monotonic() - t0
    left = sorted(set(e2e_namespaces()) - before)
    if left:
        say(f"  namespaces the suite left behind (deleting): {left}")
        for ns in left:
            kubectl("delete", "namespace", ns, "--wait=false", check=False)
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds),
        "lab": lab_description(lab),
        "profile": lab.get("profile"),
        "kubernetes": K8S_VERSION,
        "e2e_build": os.path.realpath(E2E_DIR),
        "what": what,
        "e2e_exit_code": rc,
    }
    write(os.path.join(out, f"run-{stamp}.json"), json.dumps(meta, indent=1) + "\n")
    title = f"Kubernetes {K8S_VERSION} conformance on the kubesalt lab ({meta['lab']}, {started:%Y-%m-%d}): {what}"
    res = run(
        [
            os.path.join(VENV, "bin", "python"),
            SUMMARY,
            f"--report-dir={out}",
            f"--conformance-yaml={os.path.join(E2E_DIR, 'conformance.yaml')}",
            f"--plan={PLAN_FILE}",
            f"--title={title}",
            f"--expected={expected_file}",
        ],
        check=False,
        capture=True,
    )
    print(res.stdout, end="")
    if res.returncode not in (0, 1):
        die(f"conformance_summary.py failed: {res.stderr[-2000:]}")
    say(f"e2e.test ran {seconds / 60:.1f} min (exit code {rc}); report: {out}")
    return 0 if res.returncode == 0 and rc == 0 else 1
