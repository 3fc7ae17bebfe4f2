"""containerd 2.x for real: the version-3 `config.toml` kubesalt renders for containerd 2.x (k8s_conf.containerd,
settings resolved by k8s.settings from the real defaults/profiles/catalogue, as map.jinja does) is loaded by a real
containerd 2.1 -- Debian sid's binaries (they run on bookworm), fetched and cached by tests/lab/build/debs.py -- with
its own root, state and sockets under a temporary directory, given through the formula's `k8s:container_runtime:
config` merge key. Read back from containerd itself:

- `containerd config dump` (containerd's own parse of the file, defaults filled in): the CRI images plugin's pinned
  sandbox image and registry `config_path`, the runc runtime with the systemd cgroup driver;
- the running daemon: `ctr plugins ls` has the CRI plugins (io.containerd.cri.v1 images/runtime,
  io.containerd.grpc.v1 cri) `ok`, and its "starting cri plugin" log line carries the same runtime settings;
- the registry hosts the formula writes for `k8s:container_runtime:registries` (mirror + private CA) are what
  containerd's resolver uses: an image of the private registry is pulled through the mirror (a local HTTPS registry
  signed by the test CA) from the `config_path` the dump names, and refused when the CA on disk is not the one
  that signed the mirror.

kubelet 1.20 (the lab's) speaks CRI v1alpha2, which containerd 2.x no longer serves, so this is where containerd 2.x
runs for real here."""

import copy
import hashlib
import http.server
import io
import json
import os
import pathlib
import re
import shutil
import ssl
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse

import pytest
import tomllib
import yaml

from tests.support import test_ca
from tests.support.loader import load

pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = REPO / "tests" / "lab" / "build"
FORMULAS = REPO / "formulas" / "k8s"
REGISTRY = "registry.lab.example:5000"  # never resolved: every pull must go through the mirror
IMAGE = f"{REGISTRY}/lab/busybox:1.35"
SANDBOX = f"{REGISTRY}/lab/pause:3.10"

sys.path.insert(0, str(BUILD))
import debs  # noqa: E402
import oci_image  # noqa: E402


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    """containerd, ctr and containerd-shim-runc-v2 2.1.x from Debian sid's package (cached .deb)."""
    if os.geteuid() != 0:
        pytest.skip("containerd needs root (snapshots, mounts)")
    spec = json.loads((BUILD / "profiles.json").read_text())["extras"]["containerd2"]
    deb = debs.fetch(os.environ.get("KUBESALT_CACHE", "/var/cache/kubesalt"), spec["suite"], spec["packages"])
    version = debs.deb_field(deb["containerd"])
    assert version.startswith(spec["family"]), version
    out = tmp_path_factory.mktemp("containerd2-bin")
    subprocess.run(["dpkg-deb", "-x", deb["containerd"], str(out)], check=True)
    return out / "usr" / "bin"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A local HTTPS registry (the mirror of REGISTRY) with one image, its certificate signed by a test CA; records
    each request path."""
    ca, ca_key = test_ca.ca("kubesalt-test-registry-ca")
    cert, key = test_ca.server("127.0.0.1", ca, ca_key)
    d = tmp_path_factory.mktemp("registry")
    (d / "tls.crt").write_text(test_ca.pem(cert))
    (d / "tls.key").write_text(test_ca.key_pem(key))
    (d / "hello").write_text("hello from the kubesalt test mirror\n")
    archive, manifest_digest = oci_image.image_archive(IMAGE, oci_image.layer_tar([(str(d / "hello"), "hello", 0o644)]))
    blobs = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if member.name.startswith("blobs/sha256/") and member.isfile():
                blobs["sha256:" + member.name.rsplit("/", 1)[1]] = tar.extractfile(member).read()
    seen = []

    class Registry(http.server.BaseHTTPRequestHandler):
        def answer(self, body):
            path = self.path.split("?")[0]
            seen.append(self.path)
            m = re.match(r"^/v2/lab/busybox/(manifests|blobs)/(.+)$", path)
            data, ctype = None, "application/octet-stream"
            if path in ("/v2", "/v2/"):
                data, ctype = b"{}", "application/json"
            elif m and m.group(1) == "manifests" and m.group(2) in ("1.35", manifest_digest):
                data, ctype = blobs[manifest_digest], "application/vnd.oci.image.manifest.v1+json"
            elif m and m.group(1) == "blobs" and m.group(2) in blobs:
                data = blobs[m.group(2)]
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Docker-Content-Digest", "sha256:" + hashlib.sha256(data).hexdigest())
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self.answer(True)

        def do_HEAD(self):  # noqa: N802
            self.answer(False)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "tls.crt", d / "tls.key")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield {"url": f"https://127.0.0.1:{server.server_address[1]}", "ca": test_ca.pem(ca), "seen": seen}
    finally:
        server.shutdown()
        server.server_close()


def render(root, mirror_url, ca_pem):
    """{path: contents} of what the formula writes for containerd on a worker whose pillar asks for containerd
    2.1.9, a private registry with a mirror and CA, and (merge key) a root/state/socket of its own under ``root``."""
    data = lambda name: yaml.safe_load((FORMULAS / name).read_text())  # noqa: E731
    pillar = {
        "nodes": {
            "master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"},
            "worker01": {"roles": ["worker"], "ip": "10.240.0.21"},
        },
        "fs_root": str(root),
        "versions": {"containerd": "2.1.9"},
        "container_runtime": {
            "sandbox_image": SANDBOX,
            "registries": {REGISTRY: {"mirrors": [mirror_url], "ca": ca_pem}},
            "config": {
                "root": f"{root}/var/lib/containerd",
                "state": f"{root}/run/containerd",
                "grpc": {"address": f"{root}/run/containerd/containerd.sock"},
                "ttrpc": {"address": f"{root}/run/containerd/containerd.sock.ttrpc"},
            },
        },
    }
    config = load("k8s").settings(
        data("defaults.yaml")["k8s"],
        data("profiles.yaml"),
        copy.deepcopy(pillar),
        data("catalogue.yaml"),
        minion_id="worker01",
        validate=False,
    )
    spec = load("k8s_conf").containerd(config, "worker01")
    for path, f in spec["files"].items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pathlib.Path(path).write_text(f["contents"])
    return pillar, spec


@pytest.fixture(scope="module")
def daemon(binaries, mirror, tmp_path_factory):
    root = tmp_path_factory.mktemp("containerd2")
    pillar, spec = render(root, mirror["url"], mirror["ca"])
    config_file = next(p for p in spec["files"] if p.endswith("/config.toml"))
    assert spec["flags"] == [f"--config={config_file}"]
    assert tomllib.loads(pathlib.Path(config_file).read_text())["version"] == 3
    env = dict(os.environ, PATH=f"{binaries}:{os.environ['PATH']}")
    sock = pillar["container_runtime"]["config"]["grpc"]["address"]
    log = open(root / "containerd.log", "w")  # noqa: SIM115 -- held open by the daemon it is handed to
    proc = subprocess.Popen(
        [str(binaries / "containerd"), *spec["flags"]], stdout=log, stderr=log, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            assert proc.poll() is None, (root / "containerd.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "containerd 2.1 did not open its socket"
            time.sleep(0.2)
        yield {
            "root": root,
            "pillar": pillar,
            "config": config_file,
            "sock": sock,
            "env": env,
            "bin": binaries,
            "log": root / "containerd.log",
            "proc": proc,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        subprocess.run(
            ["bash", "-c", f"grep -o ' {root}/[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l"], check=False
        )
        shutil.rmtree(root, ignore_errors=True)


def ctr(daemon, *args, check=True):
    out = subprocess.run(
        [str(daemon["bin"] / "ctr"), "-a", daemon["sock"], *args],
        capture_output=True,
        text=True,
        env=daemon["env"],
        timeout=120,
    )
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_containerd_2_1_loads_the_formula_config_and_its_cri_settings_match_the_pillar(daemon):
    dump = subprocess.run(
        [str(daemon["bin"] / "containerd"), f"--config={daemon['config']}", "config", "dump"],
        capture_output=True,
        text=True,
        env=daemon["env"],
        check=True,
    ).stdout
    plugins = tomllib.loads(dump)["plugins"]
    images, runtime = plugins["io.containerd.cri.v1.images"], plugins["io.containerd.cri.v1.runtime"]
    root = daemon["root"]
    assert images["pinned_images"]["sandbox"] == SANDBOX
    assert images["registry"]["config_path"] == f"{root}/etc/containerd/certs.d"
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runtime["containerd"]["default_runtime_name"] == "runc"
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is True
    assert runc["options"]["BinaryName"] == f"{root}/usr/local/bin/runc"
    assert runtime["cni"]["bin_dirs"] == [f"{root}/opt/cni/bin"]
    assert runtime["cni"]["conf_dir"] == f"{root}/etc/cni/net.d"

    status = {}
    for line in ctr(daemon, "plugins", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        status[(fields[0], fields[1])] = fields[-1]
    for plugin in (
        ("io.containerd.cri.v1", "images"),
        ("io.containerd.cri.v1", "runtime"),
        ("io.containerd.grpc.v1", "cri"),
    ):
        assert status.get(plugin) == "ok", (plugin, status.get(plugin))

    line = next(x for x in daemon["log"].read_text().splitlines() if 'msg="starting cri plugin"' in x)
    started = json.loads(re.search(r'config="(.*)"$', line).group(1).encode().decode("unicode_escape"))
    options = started["containerd"]["runtimes"]["runc"]["options"]
    assert options["SystemdCgroup"] is True and options["BinaryName"] == runc["options"]["BinaryName"]
    assert started["cni"]["binDirs"] == [f"{root}/opt/cni/bin"]
    assert daemon["proc"].poll() is None, "containerd exited"


def test_containerd_2_1_pulls_a_private_image_through_the_pillar_mirror_with_the_pillar_ca(daemon, mirror):
    hosts_dir = f"{daemon['root']}/etc/containerd/certs.d"
    hosts = tomllib.loads(pathlib.Path(hosts_dir, REGISTRY, "hosts.toml").read_text())
    assert hosts["server"] == f"https://{REGISTRY}" and list(hosts["host"]) == [mirror["url"]]
    mirror["seen"].clear()
    ctr(daemon, "-n", "kubesalt-test", "images", "pull", "--hosts-dir", hosts_dir, "--platform", "linux/amd64", IMAGE)
    assert IMAGE in ctr(daemon, "-n", "kubesalt-test", "images", "ls", "-q").stdout.split()
    assert any("manifests" in p and f"ns={REGISTRY}" in urllib.parse.unquote(p) for p in mirror["seen"]), mirror["seen"]


def test_containerd_2_1_refuses_the_mirror_when_the_ca_on_disk_is_not_the_one_that_signed_it(daemon, mirror):
    other, _ = test_ca.ca("some-other-ca")
    wrong = daemon["root"] / "wrong-ca"
    _, spec = render(wrong, mirror["url"], test_ca.pem(other))  # the same pillar with another CA, in its own tree
    hosts_dir = f"{wrong}/etc/containerd/certs.d"
    assert pathlib.Path(hosts_dir, REGISTRY, "ca.crt").read_text().strip() == test_ca.pem(other).strip()
    out = ctr(
        daemon,
        "-n",
        "kubesalt-test-wrong-ca",
        "images",
        "pull",
        "--hosts-dir",
        hosts_dir,
        "--platform",
        "linux/amd64",
        IMAGE,
        check=False,
    )
    assert out.returncode != 0
    assert "certificate" in out.stderr or "x509" in out.stderr, out.stderr
