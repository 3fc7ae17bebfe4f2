"""Render every SLS under formulas/ (and the top file) for every role, with pillar.example and with a minimal pillar,
for the default Kubernetes release and for 1.20 (the lab's). Real Salt rendering (a masterless salt-call Caller with
the repo's modules), so a Jinja or YAML error anywhere fails CI."""

import copy
import pathlib

import pytest
import salt.client
import salt.config
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
FORMULAS = REPO / "formulas"

EXAMPLE = yaml.safe_load((REPO / "pillar.example").read_text())
MINIMAL = {"k8s": {"nodes": {"solo": {"roles": ["master", "etcd", "worker"], "ip": "10.240.0.10"}}}}
OLD_RELEASE = {
    # 1.20 has no digests in the catalogue: the render opts in to official checksum files (no invented digests).
    "versions": {"kubernetes": "1.20.2"},
    "artifacts": {
        "checksum_urls": {
            c: f"https://dl.k8s.io/release/v1.20.2/bin/linux/amd64/{c}.sha256"
            for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy")
        }
    },
}

# The day-2 operations render only with their arguments (pillar on the command line): without, they refuse to render.
OPERATION_PILLAR = {
    "k8s.node.remove": {"node": "worker01"},
    "k8s.node.remove.drain": {"k8s_op": {"node": "worker01"}},
    "k8s.etcd.restore": {"snapshot": "latest"},
    "k8s.etcd.restore.check": {"k8s_op": {"snapshot": "latest"}},
    "k8s.etcd.restore.data": {"k8s_op": {"snapshot": "latest"}},
    "k8s.upgrade.begin": {"k8s_op": {"nodes": ["worker01"]}},
    "k8s.upgrade.finish": {"k8s_op": {"nodes": ["worker01"]}},
}
# The arguments the secret rotations pass (orchestration pillar rotate_to; node-side k8s_rotate): without them,
# those SLS refuse to render (test_rotation_sls_refuse_to_render_without_their_arguments).
ROTATION_ARGS = {"rotate_to": "key2", "k8s_rotate": {"key": "key2", "step": "added"}}
ROTATION_SLS = ("k8s.rotate.encryption", "k8s.rotate.encryption-key", "k8s.rotate.secrets")

# (pillar name, pillar, minion id, role grain)
CASES = [
    ("example", EXAMPLE, "master01", ["master"]),
    ("example", EXAMPLE, "master02", ["master"]),
    ("example", EXAMPLE, "worker01", ["worker"]),
    ("minimal", MINIMAL, "solo", ["master", "worker"]),
]


def all_sls():
    names = []
    for path in sorted((FORMULAS / "k8s").rglob("*.sls")):
        if "reactor" in path.parts:
            continue  # reactor SLS render on the master with event data (tested in test_boot)
        if path.relative_to(FORMULAS).as_posix() == "k8s/upgrade.sls":
            continue  # asks the masters for the inventory (saltutil.cmd): renders on the salt-master only (tested in
            # tests/unit/test_upgrade.py and test_upgrade_orchestration.py)
        rel = path.relative_to(FORMULAS).with_suffix("")
        parts = list(rel.parts[:-1]) if rel.name == "init" else list(rel.parts)
        names.append(".".join(parts))
    return names


def _caller(tmp_path, pillar, minion_id, grains):
    pillar_dir = tmp_path / "pillar"
    pillar_dir.mkdir()
    (pillar_dir / "top.sls").write_text("base:\n  '*':\n    - k8s\n")
    (pillar_dir / "k8s.sls").write_text(yaml.safe_dump(pillar))
    ext = tmp_path / "ext"
    ext.mkdir()
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "grains").write_text(yaml.safe_dump({"role": grains}))
    (conf / "minion").write_text(
        yaml.safe_dump(
            {
                "id": minion_id,
                "file_client": "local",
                "file_roots": {"base": [str(FORMULAS), str(ext)]},
                "pillar_roots": {"base": [str(pillar_dir)]},
                "module_dirs": [str(REPO)],
                "root_dir": str(tmp_path),
                "cachedir": str(tmp_path / "cache"),
                "pki_dir": str(tmp_path / "pki"),
                "sock_dir": str(tmp_path / "sock"),
                "log_file": str(tmp_path / "minion.log"),
                "extension_modules": str(tmp_path / "extmods"),
                "state_events": False,
            }
        )
    )
    opts = salt.config.minion_config(str(conf / "minion"))
    return salt.client.Caller(mopts=opts)


@pytest.mark.parametrize("release", ["default", "1.20"])
@pytest.mark.parametrize("pillar_name,pillar,minion_id,grains", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_every_sls_renders_for_every_role(tmp_path, release, pillar_name, pillar, minion_id, grains):
    pillar = dict(copy.deepcopy(pillar), **ROTATION_ARGS)
    if release == "1.20":
        for key, value in OLD_RELEASE.items():
            pillar["k8s"].setdefault(key, {}).update(copy.deepcopy(value))
    caller = _caller(tmp_path, pillar, minion_id, grains)
    failures = {}
    for sls in all_sls():
        extra = {"pillar": OPERATION_PILLAR[sls]} if sls in OPERATION_PILLAR else {}
        ret = caller.cmd("state.show_sls", sls, **extra)
        if not isinstance(ret, dict):
            failures[sls] = ret
    assert not failures, failures
    for sls in OPERATION_PILLAR:
        ret = caller.cmd("state.show_sls", sls)
        assert not isinstance(ret, dict) and ("k8s_op" in str(ret) or "orchestration pillar" in str(ret)), (sls, ret)
    top = caller.cmd("state.show_top")
    expected = (["k8s.master"] if "master" in grains else []) + (["k8s.worker"] if "worker" in grains else [])
    assert top == {"base": expected}


def test_rotation_sls_refuse_to_render_without_their_arguments(tmp_path):
    caller = _caller(tmp_path, copy.deepcopy(MINIMAL), "solo", ["master", "worker"])
    for sls in (*ROTATION_SLS, "k8s.rotate.service-account-key"):
        ret = caller.cmd("state.show_sls", sls)
        assert isinstance(ret, list) and ("rotate_to" in ret[0] or "needs pillar k8s_rotate" in ret[0]), (sls, ret)
