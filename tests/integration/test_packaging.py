"""Packaging: `pip install .` in a fresh venv makes kubesalt's modules loadable by salt-call through Salt's loader
entry points, with no saltutil.sync_all; and kitchen.yml is valid and names real things."""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _wheel_dir():
    key = hashlib.sha256((REPO / "tests/requirements.txt").read_bytes()).hexdigest()[:12]
    path = pathlib.Path(os.environ.get("KUBESALT_CACHE", "/var/cache/kubesalt")) / "wheels" / key
    return path if (path / ".complete").exists() else None


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory):
    work = tmp_path_factory.mktemp("pkg")
    src = work / "src"
    for name in ("setup.py", "saltext", "_modules", "_states", "_utils", "_runners", "_beacons", "_output"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    venv = work / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    wheels = _wheel_dir()
    source = ["--no-index", "--find-links", str(wheels)] if wheels else []
    subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", *source, str(src)], check=True
    )
    conf = work / "conf"
    conf.mkdir()
    (conf / "minion").write_text(
        yaml.safe_dump(
            {
                "root_dir": str(work / "root"),
                "file_client": "local",
                "log_file": str(work / "minion.log"),
                "file_roots": {"base": [str(work / "empty")]},
            }
        )
    )
    return venv, conf


def _salt_call(installed_venv, *args):
    venv, conf = installed_venv
    out = subprocess.run(
        [str(venv / "bin/salt-call"), "--local", f"--config-dir={conf}", "--out=yaml", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return yaml.safe_load(out.stdout)["local"]


def test_pip_install_makes_execution_modules_loadable_without_sync(installed_venv):
    modules = _salt_call(installed_venv, "sys.list_modules", "k8s*")
    assert "k8s" in modules
    for name in ("k8s_pki", "k8s_artifact", "k8s_etcd", "k8s_upgrade"):
        if (REPO / "_modules" / f"{name}.py").exists():
            assert name in modules, modules


def test_pip_install_makes_state_modules_loadable_without_sync(installed_venv):
    states = _salt_call(installed_venv, "sys.list_state_modules", "k8s*")
    assert "k8s_pki" in states or not (REPO / "_states/k8s_pki.py").exists(), states
    for path in (REPO / "_states").glob("*.py"):
        assert path.stem in states, (path.stem, states)


def test_pip_install_brings_the_shared_core_the_modules_import(installed_venv):
    """k8s.settings merges with kubesalt.data and derives with kubesalt.topology: it answers only if the shared
    package came with the install (nothing is synced: file_client local, no extension_modules)."""
    venv, conf = installed_venv
    defaults = yaml.safe_load((REPO / "formulas/k8s/defaults.yaml").read_text())["k8s"]
    pillar = {
        "nodes": {"m1": {"roles": ["master", "etcd"], "ip": "fd00::11"}, "w1": {"roles": ["worker"], "ip": "fd00::21"}}
    }
    config = _salt_call(
        installed_venv,
        "k8s.settings",
        f"defaults={json.dumps(defaults)}",
        f"pillar={json.dumps(pillar)}",
        "minion_id=w1",
        "validate=False",
    )
    assert config["cluster"]["etcd_client_urls"] == ["https://[fd00::11]:2379"]
    assert config["cluster"]["roles"] == ["worker"] and config["cluster"]["api_url"] == "https://127.0.0.1:6444"
    assert config["cluster"]["apiserver_url"] == "https://[fd00::11]:6443"
    site = subprocess.run(
        [str(venv / "bin/python"), "-c", "import kubesalt.topology as t; print(t.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "site-packages/kubesalt/topology.py" in site, site


def test_pip_install_brings_the_writers_documents_and_benchmark_table(installed_venv):
    """k8s_conf's writers (kubesalt.render) and documents (kubesalt.objects) and k8s_cis's table
    (kubesalt.cis_checks) come with the install: the public functions answer through them."""
    assert _salt_call(installed_venv, "k8s_conf.to_toml", '{"version": 2, "plugins": {"x y": [1, true]}}') == (
        'version = 2\n\n[plugins]\n"x y" = [1, true]\n'
    )
    checks = _salt_call(installed_venv, "k8s_cis.checks")
    assert len(checks) == 131 and checks[0]["id"] == "1.1.1" and checks[-1]["id"] == "5.6.4"
    unit = _salt_call(
        installed_venv, "k8s_conf.unit", json.dumps({"description": "d", "exec": "/bin/x", "flags": ["--a=b c"]})
    )
    assert 'ExecStart=/bin/x \\\n  "--a=b c"' in unit


LOADERS = """
import json, sys
import salt.config, salt.loader
opts = salt.config.minion_config(sys.argv[1])
master = dict(opts, __role="master")
utils = salt.loader.utils(master)
print(json.dumps({
    "runners": sorted(f for f in salt.loader.runner(master, utils=utils) if f.startswith("k8s.")),
    "beacons": sorted(f for f in salt.loader.beacons(opts, salt.loader.minion_mods(opts)) if f.startswith("k8s_")),
    "outputters": sorted(o for o in salt.loader.outputters(opts) if o == "kubesalt"),
}))
"""


def test_pip_install_brings_the_runner_outputter_and_beacon(installed_venv):
    """The salt-master's runner and outputter, and the minions' beacon, load from the installed extension through
    Salt's own loaders (nothing synced: no extension_modules)."""
    venv, conf = installed_venv
    # cwd: not the checkout, whose saltext/ would shadow the installed package (python -c puts cwd on sys.path)
    out = subprocess.run(
        [str(venv / "bin/python"), "-c", LOADERS, str(conf / "minion")],
        capture_output=True,
        text=True,
        check=True,
        cwd=conf,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"k8s.status", "k8s.converge", "k8s.follow"} <= set(found["runners"]), found
    assert {"k8s_certs.beacon", "k8s_certs.validate"} <= set(found["beacons"]), found
    assert found["outputters"] == ["kubesalt"], found


def test_installed_extension_is_listed_in_versions_report(installed_venv):
    venv, conf = installed_venv
    out = subprocess.run(
        [str(venv / "bin/salt-call"), f"--config-dir={conf}", "--versions-report"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "saltext.kubesalt" in out.stdout


def test_kitchen_yml_is_valid_and_applies_real_roles_with_pillar_example():
    kitchen = yaml.safe_load((REPO / "kitchen.yml").read_text())
    assert kitchen["provisioner"]["name"] == "salt_solo"
    assert (REPO / kitchen["provisioner"]["pillars_from_files"]["k8s.sls"]).is_file()
    applied = {sls for suite in kitchen["suites"] for sls in suite["provisioner"]["state_top"]["base"]["*"]}
    assert applied == {"k8s.master", "k8s.worker"}
    for sls in applied:
        assert (REPO / "formulas" / (sls.replace(".", "/") + ".sls")).is_file()
    assert any(p["name"].startswith("debian-12") for p in kitchen["platforms"])
