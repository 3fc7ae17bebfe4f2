"""Suite-wide setup."""

import os

import pytest
import salt._logging.impl

# Importing salt installs a deferred stderr handler that buffers every log record and replays it at interpreter
# exit, after pytest has closed its capture streams ("--- Logging error ---" noise). pytest's own handlers (caplog)
# receive the records; the buffer is not needed in tests.
salt._logging.impl.shutdown_temp_handler()


# CI (.ci/run) builds everything the suite needs before it runs, so a test that skips there for want of a build has
# not been run: KUBESALT_NO_SKIP=1 turns such a skip into a failure that names the skip's reason. (Without it, a cold
# machine's `make test` ran before the Kubernetes build and skipped 5 tests, and CI still passed.)
NO_SKIP = "KUBESALT_NO_SKIP"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(NO_SKIP) == "1" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"skipped, and {NO_SKIP}=1 (CI) forbids skips: {reason}"
