"""KUBESALT_NO_SKIP=1 (set by .ci/run) turns a skipped test into a failure that names the skip's reason: on CI every
build a test needs exists, so a skip there means a test that did not run. Runs pytest itself on a small test file."""

import os
import subprocess
import sys

from tests.support.loader import ROOT

SAMPLE = """
import pytest

def test_runs():
    assert True

def test_skips_inside():
    pytest.skip("no kube-apiserver build")

@pytest.mark.skipif(True, reason="no e2e build")
def test_skipped_by_marker():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False
"""


def run_sample(tmp_path, no_skip):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "KUBESALT_NO_SKIP"}
    if no_skip:
        env["KUBESALT_NO_SKIP"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", "-rA",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_sample.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_skips_fail_when_ci_forbids_them(tmp_path):
    res = run_sample(tmp_path, no_skip=True)
    out = res.stdout
    assert res.returncode == 1, out
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in out, out
    assert "KUBESALT_NO_SKIP=1 (CI) forbids skips: no kube-apiserver build" in out, out
    assert "KUBESALT_NO_SKIP=1 (CI) forbids skips: no e2e build" in out, out


def test_skips_stay_skips_outside_ci(tmp_path):
    res = run_sample(tmp_path, no_skip=False)
    assert res.returncode == 0, res.stdout
    assert "1 passed, 2 skipped, 1 xfailed" in res.stdout, res.stdout
