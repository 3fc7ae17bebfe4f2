"""
The return of a kubesalt state, as Salt expects it: ``{"name", "result", "changes", "comment"}``.
"""


def new(name):
    """A state return that says "nothing to do" until the state says otherwise."""
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def failed(ret, exc):
    """``ret`` turned into a failure with ``exc`` as the comment; a failed state reports no changes."""
    ret.update(result=False, changes={}, comment=str(exc))
    return ret
