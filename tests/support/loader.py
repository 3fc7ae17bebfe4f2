"""Load a kubesalt execution or state module straight from the source tree, with Salt's dunders injected, so unit
tests call its functions without a running minion."""

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The modules import kubesalt's shared core (_utils/kubesalt), as they do on a minion after a sync.
if str(ROOT / "_utils") not in sys.path:
    sys.path.insert(0, str(ROOT / "_utils"))


def load(name, kind="modules", **dunders):
    """Import ``_<kind>/<name>.py`` as a fresh module object; ``dunders`` (``__salt__=...``) are set on it.

    Missing dunders default to empty dicts (``__opts__`` gets ``test: False``)."""
    path = ROOT / f"_{kind}" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"kubesalt_{kind}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    defaults = {
        "__salt__": {},
        "__opts__": {"test": False, "id": "unit"},
        "__context__": {},
        "__pillar__": {},
        "__grains__": {},
        "__states__": {},
    }
    defaults.update({f"__{k.strip('_')}__": v for k, v in dunders.items()})
    for key, value in defaults.items():
        setattr(module, key, value)
    return module
