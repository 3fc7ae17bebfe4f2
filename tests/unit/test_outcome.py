"""kubesalt.outcome: what kubesalt's state modules share -- the compare -> test -> act -> report sequence, the
__virtual__ answer and the settings a state works with. The states themselves are tested against a real
kube-apiserver (tests/kube/test_kube_drain.py, test_kube_upgrade.py)."""

import functools

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import outcome


class Execution:
    """An execution function that takes ``test``: it records each call, and acts only without ``test``."""

    def __init__(self, pending, fail_on=None):
        self.pending, self.fail_on, self.calls, self.done = dict(pending), fail_on, [], {}

    def __call__(self, settings, name, test=False):
        self.calls.append((settings, name, test))
        if self.fail_on == ("test" if test else "act"):
            raise CommandExecutionError(f"{name}: refused")
        if not test:
            self.done, self.pending = dict(self.pending), {}
            return dict(self.done)
        return dict(self.pending)


def converge(execution, test=False, load=lambda: {"settings": 1}):
    return outcome.converge(
        "thing",
        test,
        load,
        functools.partial(execution, name="thing"),
        lambda answer: (answer, "would change" if answer else "as wanted"),
        lambda done, pending: (done, f"changed {sorted(done)}"),
    )


def test_converge_acts_reports_and_changes_nothing_on_a_second_run():
    execution = Execution({"cordoned": True})
    first = converge(execution)
    assert first == {"name": "thing", "result": True, "changes": {"cordoned": True}, "comment": "changed ['cordoned']"}
    assert [c[2] for c in execution.calls] == [True, False]  # compared first, then acted
    assert execution.calls[0][0] == {"settings": 1}
    again = converge(execution)
    assert again == {"name": "thing", "result": True, "changes": {}, "comment": "as wanted"}


def test_converge_under_test_reports_every_pending_change_and_acts_on_nothing():
    execution = Execution({"cordoned": True, "evicted": ["ns/web"]})
    dry = converge(execution, test=True)
    assert dry["result"] is None and dry["changes"] == {"cordoned": True, "evicted": ["ns/web"]}
    assert dry["comment"] == "would change"
    assert [c[2] for c in execution.calls] == [True] and execution.done == {}


@pytest.mark.parametrize("fail_on", ["test", "act"])
def test_a_failing_step_fails_the_state_with_no_changes(fail_on):
    ret = converge(Execution({"cordoned": True}, fail_on=fail_on))
    assert ret == {"name": "thing", "result": False, "changes": {}, "comment": "thing: refused"}


def test_bad_settings_fail_the_state_before_anything_is_asked():
    execution = Execution({"cordoned": True})

    def load():
        raise SaltInvocationError("k8s:nodes: empty")

    ret = converge(execution, load=load)
    assert ret["result"] is False and ret["comment"] == "k8s:nodes: empty" and execution.calls == []


def test_virtual_names_the_missing_execution_module():
    assert outcome.virtual({"k8s_kube.apply": print}, "k8s_kube", "k8s_kube.apply") == "k8s_kube"
    assert outcome.virtual({}, "k8s_kube", "k8s_kube.apply", "is 'requests' installed?") == (
        False,
        "k8s_kube states: the k8s_kube execution module is not loaded (is 'requests' installed?)",
    )
    assert outcome.virtual({}, "k8s_upgrade", "k8s_upgrade.preflight") == (
        False,
        "k8s_upgrade states: the k8s_upgrade execution module is not loaded",
    )


def test_settings_are_the_given_ones_else_the_minions_validated_ones():
    asked = []
    salt = {"k8s.config": lambda validate=False: asked.append(validate) or {"mine": True}}
    assert outcome.settings(salt, {"given": True}) == {"given": True} and asked == []
    assert outcome.settings(salt, None) == {"mine": True} and asked == [True]
