"""Every function Salt's loader exposes from kubesalt's modules documents how to call it: execution functions with a
``CLI Example`` (``salt-call <module>.<function> ...``), runner functions with one (``salt-run <module>.<function>``),
state functions with an SLS example of the state, as ``salt.modules.*`` / ``salt.runners.*`` / ``salt.states.*``
do. Salt renders these in ``sys.doc`` / ``salt-run -d`` / ``sys.state_doc``."""

import inspect
import re

import pytest

from tests.support.loader import ROOT, load


def exposed(kind):
    """(module, virtual name, function name, function) for every public function the loader would expose."""
    for path in sorted((ROOT / f"_{kind}").glob("*.py")):
        module = load(path.stem, kind)
        name = getattr(module, "__virtualname__", path.stem)
        for attr, obj in sorted(vars(module).items()):
            if not attr.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module.__name__:
                yield pytest.param(name, attr, obj, id=f"{name}.{attr}")


@pytest.mark.parametrize("module, function, obj", list(exposed("modules")))
def test_execution_function_has_a_docstring_with_a_cli_example(module, function, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{module}.{function} has no docstring"
    example = re.search(r"CLI Example:\s*\n\s*\.\. code-block:: bash\s*\n((?:\s+.*\n?)+)", doc)
    assert example, f"{module}.{function}: no 'CLI Example:' with a bash code block"
    assert re.search(rf"\bsalt(-call)?\b.*\b{re.escape(module)}\.{re.escape(function)}\b", example.group(1)), (
        f"{module}.{function}: the CLI example does not call {module}.{function}"
    )


@pytest.mark.parametrize("module, function, obj", list(exposed("runners")))
def test_runner_function_has_a_docstring_with_a_salt_run_example(module, function, obj):
    doc = inspect.getdoc(obj) or ""
    example = re.search(r"CLI Example:\s*\n\s*\.\. code-block:: bash\s*\n((?:\s+.*\n?)+)", doc)
    assert example, f"runner {module}.{function}: no 'CLI Example:' with a bash code block"
    assert re.search(rf"\bsalt-run\b.*\b{re.escape(module)}\.{re.escape(function)}\b", example.group(1)), (
        f"runner {module}.{function}: the CLI example does not run salt-run {module}.{function}"
    )


@pytest.mark.parametrize("module, function, obj", list(exposed("states")))
def test_state_function_has_a_docstring_with_an_sls_example(module, function, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"state {module}.{function} has no docstring"
    example = re.search(r"\.\. code-block:: (?:yaml|jinja)\s*\n((?:\s+.*\n?)+)", doc)
    assert example, f"state {module}.{function}: no SLS example (a yaml or jinja code block)"
    assert re.search(rf"^\s+{re.escape(module)}\.{re.escape(function)}:\s*$", example.group(1), re.M), (
        f"state {module}.{function}: the SLS example does not use {module}.{function}"
    )


def test_the_check_finds_every_module():
    names = {param.values[0] for param in [*exposed("modules"), *exposed("states")]}
    assert {"k8s", "k8s_pki", "k8s_artifact", "k8s_etcd", "k8s_kube", "k8s_conf", "k8s_ops"} <= names
    assert len(list(exposed("states"))) >= 15
    assert {param.values[1] for param in exposed("runners")} >= {"status", "converge", "follow"}
