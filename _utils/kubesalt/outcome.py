"""
The return of a kubesalt state, as Salt expects it: ``{"name", "result", "changes", "comment"}``; and what the state
modules share around it: their ``__virtual__`` answer, the settings a state works with, and the compare -> test ->
act -> report sequence of a state over an execution function that takes ``test``.
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError


def new(name):
    """A state return that says "nothing to do" until the state says otherwise."""
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def failed(ret, exc):
    """``ret`` turned into a failure with ``exc`` as the comment; a failed state reports no changes."""
    ret.update(result=False, changes={}, comment=str(exc))
    return ret


def virtual(salt, virtualname, function, hint=""):
    """A state module's ``__virtual__`` answer: ``virtualname`` when its execution module is loaded (``function``,
    e.g. ``k8s_kube.apply``, is in ``salt``: the loader's ``__salt__``), else ``(False, why)``."""
    if function in salt:
        return virtualname
    module = function.split(".", 1)[0]
    return (False, f"{virtualname} states: the {module} execution module is not loaded{f' ({hint})' if hint else ''}")


def settings(salt, config):
    """The settings a state was given (``config``, from ``k8s/map.jinja``), else the minion's own, validated
    (``k8s.config`` from ``salt``: the loader's ``__salt__``)."""
    return config if config is not None else salt["k8s.config"](validate=True)


def converge(name, test, load, run, probe, report):
    """
    A state over an execution function that takes ``test``: compare, then act, then report. ``load()`` yields the
    settings; ``run(settings, test=True)`` asks what would change and ``probe(answer)`` turns that into
    ``(pending changes, comment)``. With none pending the state is done and the comment says why; under ``test`` it
    reports them with ``result: None`` and that comment. Otherwise ``run(settings)`` acts, and ``report(answer,
    pending)`` returns ``(changes, comment)``. A ``CommandExecutionError`` or ``SaltInvocationError`` from any step
    fails the state, with no changes.
    """
    ret = new(name)
    try:
        loaded = load()
        pending, comment = probe(run(loaded, test=True))
        if not pending:
            ret["comment"] = comment
            return ret
        if test:
            ret.update(result=None, changes=pending, comment=comment)
            return ret
        changes, comment = report(run(loaded), pending)
        ret.update(changes=changes, comment=comment)
    except (CommandExecutionError, SaltInvocationError) as exc:
        failed(ret, exc)
    return ret
