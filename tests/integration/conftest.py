"""
Integration harness: a REAL salt-master and three REAL salt-minions (pytest-salt-factories) on this machine.

- master: file_roots = formulas/ (what `conf/master.d/kubesalt.conf` serves: the formulas plus the links to the
  Python modules), pillar_roots = a generated pillar with the cluster inventory, and the peer rules, worker pools
  and reactor of `conf/master.d/kubesalt.conf`, so the tests run the configuration users install.
- minions: master01 (role grain master; pillar roles master+etcd, the CA minion), worker01 and worker02 (role grain
  worker). Modules reach them through `saltutil.sync_all`, the path users take.
- Each minion gets its own `k8s:fs_root` (pillar) so the states' absolute paths land in a per-minion directory:
  several minions share this machine and would otherwise collide in /etc. `k8s:manage_services` is false because
  there is no systemd here; unit files are still rendered and checked.
"""

import copy
import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import textwrap

import pytest

from tests.support.master_conf import MASTER_CONF

REPO = pathlib.Path(__file__).resolve().parents[2]

# minion id -> (role grain, pillar roles, ip)
NODES = {
    "master01": (["master"], ["master", "etcd"], "10.240.0.11"),
    "worker01": (["worker"], ["worker"], "10.240.0.21"),
    "worker02": (["worker"], ["worker"], "10.240.0.22"),
}


# The steps of formulas/k8s/cluster.sls, in run order.
ORCHESTRATION_STEPS = [
    "sync kubesalt extensions",
    "validate configuration on every node",
    "certificate authorities on the CA minion",
    "node certificates everywhere",
    "etcd members in parallel",
    "etcd members restarted one at a time",
    "control plane one master at a time",
    "cluster objects and add-ons",
    "nodes (masters and workers)",
    "smoke checks",
]


def inventory():
    return {mid: {"roles": roles, "ip": ip} for mid, (_, roles, ip) in NODES.items()}


@pytest.fixture(scope="session")
def salt_factories_config():
    return {"slow_stop": False}


@pytest.fixture(scope="session")
def fs_root(tmp_path_factory):
    """Parent of every minion's k8s:fs_root: <fs_root>/<minion id>/etc/kubernetes/..."""
    return tmp_path_factory.mktemp("nodes")


ETCD_LAB_VERSION = "3.4.23"
# The lab's versions (Debian's builds/packages of them run for real in the lab). Their upstream downloads cannot be
# reached here, so the test mirror serves STAND-INS for every binary except etcd: small executables, each with its
# own real sha256 pinned below. The download, digest check, cache, extraction and install are the production path;
# the daemons themselves run in tests/kube and the lab, not here (no systemd on this machine).
VERSIONS = {
    "kubernetes": "1.20.2",
    "etcd": ETCD_LAB_VERSION,
    "containerd": "1.6.20",
    "runc": "1.1.5",
    "cni_plugins": "1.1.1",
    "crictl": "1.20.0",
}
KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl")


# Which version each stand-in claims (the VERSIONS key of its component).
_STAND_IN_VERSIONS = {
    **dict.fromkeys(("containerd", "containerd-shim-runc-v2", "ctr"), "containerd"),
    **dict.fromkeys(("bridge", "host-local", "loopback", "portmap"), "cni_plugins"),
    "runc": "runc",
    "crictl": "crictl",
}


def stand_in(name):
    """A small executable in the place of ``name``: it answers ``--version`` like the real one, nothing else."""
    version = VERSIONS[_STAND_IN_VERSIONS.get(name, "kubernetes")]
    text = (
        f"#!/bin/sh\n# kubesalt integration-test stand-in for {name}: the real binary runs in the lab.\n"
        f'[ "$1" = --version ] && echo "{name} v{version}"\nexit 0\n'
    )
    return text.encode()


def _tarball(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for arcname, source in members.items():
            data = source if isinstance(source, bytes) else pathlib.Path(source).read_bytes()
            info = tarfile.TarInfo(arcname)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def mirror_tree(root):
    """Write the test mirror under ``root`` in upstream URL shapes; return the pins (component -> version -> digest)."""
    v = VERSIONS
    gh = "github.com"
    files = {
        f"github.com/etcd-io/etcd/releases/download/v{v['etcd']}/etcd-v{v['etcd']}-linux-amd64.tar.gz": (
            "etcd",
            _tarball({f"etcd-v{v['etcd']}-linux-amd64/{n}": f"/usr/bin/{n}" for n in ("etcd", "etcdctl")}),
        ),
        f"{gh}/containerd/containerd/releases/download/v{v['containerd']}/"
        f"containerd-{v['containerd']}-linux-amd64.tar.gz": (
            "containerd",
            _tarball({f"bin/{n}": stand_in(n) for n in ("containerd", "containerd-shim-runc-v2", "ctr")}),
        ),
        f"github.com/opencontainers/runc/releases/download/v{v['runc']}/runc.amd64": ("runc", stand_in("runc")),
        f"{gh}/containernetworking/plugins/releases/download/v{v['cni_plugins']}/"
        f"cni-plugins-linux-amd64-v{v['cni_plugins']}.tgz": (
            "cni-plugins",
            _tarball({f"./{n}": stand_in(n) for n in ("bridge", "host-local", "loopback", "portmap")}),
        ),
        f"{gh}/kubernetes-sigs/cri-tools/releases/download/v{v['crictl']}/crictl-v{v['crictl']}-linux-amd64.tar.gz": (
            "crictl",
            _tarball({"crictl": stand_in("crictl")}),
        ),
    }
    for name in KUBE_BINARIES:
        files[f"dl.k8s.io/release/v{v['kubernetes']}/bin/linux/amd64/{name}"] = (name, stand_in(name))
    version_of = {
        "etcd": "etcd",
        "containerd": "containerd",
        "runc": "runc",
        "cni-plugins": "cni_plugins",
        "crictl": "crictl",
    }
    pins = {}
    for rel, (component, data) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        version = v[version_of.get(component, "kubernetes")]
        pins[component] = {version: {"amd64": {"sha256": hashlib.sha256(data).hexdigest()}}}
    return pins


@pytest.fixture(scope="session")
def artifact_mirror(tmp_path_factory):
    """A real artifact mirror on 127.0.0.1 (what k8s:artifacts:mirror points at in air-gapped sites), serving every
    artifact in its upstream shape: etcd repackaged from Debian's etcd-server binaries, stand-ins for the rest (see
    VERSIONS). The public internet (github.com, dl.k8s.io) cannot be reached here. Returns (base URL, pins)."""
    from tests.support.httpserver import LocalHTTPServer

    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        os.environ.pop(var, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    root = tmp_path_factory.mktemp("mirror")
    pins = mirror_tree(root)
    server = LocalHTTPServer().start()
    server.serve_directory("/", str(root))
    yield server.base_url, pins
    server.stop()


@pytest.fixture(scope="session")
def pillar_dir(tmp_path_factory, fs_root, artifact_mirror):
    path = tmp_path_factory.mktemp("pillar")
    (path / "top.sls").write_text("base:\n  '*':\n    - k8s\n    - override\n")
    (path / "k8s.sls").write_text(
        textwrap.dedent(
            f"""\
            # Test pillar: the cluster inventory, plus a per-minion fs_root (a test-only option).
            k8s:
              fs_root: {fs_root}/{{{{ grains["id"] }}}}
              manage_services: false
              nodes: {json.dumps(inventory())}
              versions: {json.dumps(VERSIONS)}
              artifacts:
                mirror: {artifact_mirror[0]}
                pins: {json.dumps(artifact_mirror[1])}
            """
        )
    )
    (path / "override.sls").write_text("{}\n")
    return path


@pytest.fixture(scope="session")
def salt_master(salt_factories, pillar_dir):
    config = {
        # conf/master.d/kubesalt.conf as users install it (copies: salt-factories adds its own peer rules), with the
        # test's own roots, and keys auto-accepted: the test minions' keys are made by salt-factories itself.
        **copy.deepcopy(MASTER_CONF),
        "file_roots": {"base": [str(REPO / "formulas")]},
        "pillar_roots": {"base": [str(pillar_dir)]},
        "auto_accept": True,
        "fileserver_list_cache_time": 0,
    }
    factory = salt_factories.salt_master_daemon("kubesalt-master", defaults=config)
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="session")
def salt_minions(salt_master):
    factories = {
        mid: salt_master.salt_minion_daemon(mid, defaults={"grains": {"role": grain_roles}})
        for mid, (grain_roles, _, _) in NODES.items()
    }
    started = []
    try:
        for factory in factories.values():
            factory.start(start_timeout=120)
            started.append(factory)
        cli = salt_master.salt_cli(timeout=120)
        ret = cli.run("saltutil.sync_all", minion_tgt="*")
        assert ret.returncode == 0, ret
        for mid in NODES:
            assert "modules.k8s" in ret.data[mid]["modules"], ret.data[mid]
        yield factories
    finally:
        for factory in started:
            factory.terminate()


@pytest.fixture(scope="session")
def salt_cli(salt_master, salt_minions):
    return salt_master.salt_cli(timeout=180)


@pytest.fixture(scope="session")
def salt_run_cli(salt_master, salt_minions):
    return salt_master.salt_run_cli(timeout=300)


@pytest.fixture(scope="session")
def runner_synced(salt_run_cli):
    """kubesalt's runner and outputter on the master, the file_roots route: `salt-run saltutil.sync_all`."""
    ret = salt_run_cli.run("saltutil.sync_all")
    assert ret.returncode == 0, ret
    assert "runners.k8s" in ret.data["runners"] and "output.kubesalt" in ret.data["output"], ret.data
    return ret.data


SALT_RUN = pathlib.Path(sys.executable).parent / "salt-run"


def salt_run(salt_master, *args, timeout=300):
    """The real salt-run of the master, as an operator types it (no --out unless given)."""
    return subprocess.run(
        [str(SALT_RUN), "-c", str(salt_master.config_dir), *args], capture_output=True, text=True, timeout=timeout
    )


class StateRun:
    """The return of one state.apply on one minion, with the questions tests ask of it."""

    def __init__(self, minion, ret):
        self.minion = minion
        self.process = ret
        self.raw = ret.data if isinstance(ret.data, (dict, list)) else ret.stdout
        self.states = self.raw if isinstance(self.raw, dict) else {}

    @property
    def errors(self):
        """Render/compile errors (a list of strings instead of state results)."""
        return self.raw if isinstance(self.raw, list) else []

    @property
    def ok(self):
        return bool(self.states) and all(s["result"] is not False for s in self.states.values())

    @property
    def failed(self):
        return {k: s for k, s in self.states.items() if s["result"] is False}

    @property
    def changed(self):
        return {k: s["changes"] for k, s in self.states.items() if s.get("changes")}

    @property
    def pending(self):
        """States that reported result None (what test=True would change)."""
        return {k: s for k, s in self.states.items() if s["result"] is None}

    def __repr__(self):
        return f"StateRun({self.minion}: {json.dumps(self.raw, indent=1, default=str)[:6000]})"


@pytest.fixture(scope="session")
def apply_sls(salt_cli):
    """apply_sls(minion, sls, test=False, pillar=None) -> StateRun, through the real master."""

    def _apply(minion, sls, test=False, pillar=None):
        args = ["state.apply", sls]
        if test:
            args.append("test=True")
        if pillar is not None:
            args.append(f"pillar={json.dumps(pillar)}")
        return StateRun(minion, salt_cli.run(*args, minion_tgt=minion))

    return _apply


@pytest.fixture
def pillar_override(salt_cli, pillar_dir):
    """pillar_override(text): write a pillar override (merged over the test pillar), refresh pillar on every minion;
    restored on exit."""

    def _write(text):
        (pillar_dir / "override.sls").write_text(text)
        ret = salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt="*")
        assert ret.returncode == 0, ret

    yield _write
    _write("{}\n")


@pytest.fixture(scope="session")
def node_root(fs_root):
    """node_root(minion) -> the pathlib.Path that minion's states treat as '/'."""
    return lambda minion: pathlib.Path(fs_root) / minion


def snapshot(path):
    """Every file and directory under ``path`` with its mode and content digest: compare two to prove nothing
    changed on disk."""
    import hashlib
    import os

    result = {}
    path = pathlib.Path(path)
    if not path.exists():
        return result
    for entry in sorted(path.rglob("*")):
        st = entry.lstat()
        digest = hashlib.sha256(entry.read_bytes()).hexdigest() if entry.is_file() else ""
        result[str(entry.relative_to(path))] = (oct(st.st_mode), digest, os.path.islink(entry))
    return result
