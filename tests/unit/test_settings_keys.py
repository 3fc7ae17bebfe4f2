"""Every setting in formulas/k8s/defaults.yaml has an effect: its key is read by kubesalt's code (modules, the shared
core, SLS files, map.jinja, macros). A documented key that nothing reads is a lie to the user (k8s:paths:etcd_config_dir
was one); it either gets an effect or goes."""

import re

import pytest
import yaml

from tests.support.loader import ROOT

FORMULAS = ROOT / "formulas" / "k8s"
DEFAULTS = yaml.safe_load((FORMULAS / "defaults.yaml").read_text())["k8s"]
_KEY = re.compile(r"[a-z][a-z0-9_]*")


def leaves(mapping, prefix=()):
    """Every settings key path; a mapping that is empty or free-form data (keys not snake_case names, like the
    flannel backend {Type: vxlan}) is one setting."""
    for key, value in mapping.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value and all(_KEY.fullmatch(str(k)) for k in value):
            yield from leaves(value, path)
        else:
            yield path


def code():
    texts = []
    for pattern, base in (
        ("*.py", ROOT / "_modules"),
        ("*.py", ROOT / "_states"),
        ("*.py", ROOT / "_runners"),
        ("*.py", ROOT / "_beacons"),
        ("*.py", ROOT / "_utils"),
        ("*.sls", FORMULAS.parent),
        ("*.jinja", FORMULAS.parent),
    ):
        texts += [p.read_text() for p in base.rglob(pattern)]
    # k8s:versions:<component> is read through the catalogue's version_key
    texts.append((FORMULAS / "catalogue.yaml").read_text())
    return "\n".join(texts)


CODE = code()


@pytest.mark.parametrize("path", list(leaves(DEFAULTS)), ids=":".join)
def test_every_default_is_read_by_the_code(path):
    key = path[-1]
    # k8s.paths.<key>, config["paths"]["<key>"], .get("<key>"), paths.<key> in Jinja ...
    assert re.search(rf"""(?<![\w-])["'.]?{re.escape(key)}\b""", CODE), f"k8s:{':'.join(path)} is never read"


def test_the_check_sees_a_dead_key():
    assert not re.search(r"""(?<![\w-])["'.]?etcd_config_dir\b""", CODE)
    assert ("paths", "etcd_data_dir") in set(leaves(DEFAULTS)) and ("network", "backend") in set(leaves(DEFAULTS))
