"""k8s_artifact.resolve (catalogue + pins + mirror), checksum-file opt-in, and mirror_populate.

Settings come from the real k8s.settings() over the real formulas/k8s/*.yaml (the ``make_settings`` fixture).
The public internet cannot be reached from the test machines, so "upstream" is always the local HTTP server on
127.0.0.1: tests point a component's URL at it with a pin (``k8s:artifacts:pins:<c>:<v>:<arch>:url``), exactly as a
site would pin a non-default download location."""

import hashlib
import os

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support.httpserver import http_server  # noqa: F401 - pytest fixture
from tests.support.loader import load
from tests.unit.conftest import K8S_VERSION, VERSIONS, catalogue_digest

NODES = {
    "master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"},
    "worker01": {"roles": ["worker"], "ip": "10.240.0.21"},
}
KUBELET = os.urandom(300_000)
KUBE_PROXY = os.urandom(200_000)
CATALOGUE_KUBELET = catalogue_digest("kubelet")
CRICTL = VERSIONS["crictl"]


def sha(data):
    return hashlib.sha256(data).hexdigest()


def settings(make_settings, **artifacts):
    return make_settings({"nodes": NODES, "artifacts": artifacts})


# -- resolve ---------------------------------------------------------------------------------------------------------
def test_resolve_binary_from_the_catalogue(art, make_settings):
    a = art.resolve("kubelet", settings(make_settings))
    assert a == {
        "component": "kubelet",
        "version": K8S_VERSION,
        "arch": "amd64",
        "url": f"https://dl.k8s.io/release/v{K8S_VERSION}/bin/linux/amd64/kubelet",
        "upstream_url": f"https://dl.k8s.io/release/v{K8S_VERSION}/bin/linux/amd64/kubelet",
        "hash_type": "sha256",
        "digest": CATALOGUE_KUBELET,
        "checksum_url": None,
        "upstream_checksum_url": None,
        "type": "binary",
        "members": {},
        "target": "/usr/local/bin/kubelet",
        "files": ["/usr/local/bin/kubelet"],
    }


def test_resolve_archive_formats_members_for_version_and_arch(art, make_settings):
    config = make_settings({"nodes": NODES, "arch": "arm64"})
    a = art.resolve("etcd", config)
    assert a["url"] == "https://github.com/etcd-io/etcd/releases/download/v3.6.14/etcd-v3.6.14-linux-arm64.tar.gz"
    assert a["digest"] == "fa1b80565ee6fc2df1ae6f57a508b221f3ecc7d591c317c581cd8281b0842b3e"
    assert a["type"] == "archive"
    assert a["members"] == {"etcd": "etcd-v3.6.14-linux-arm64/etcd", "etcdctl": "etcd-v3.6.14-linux-arm64/etcdctl"}
    assert a["target"] == "/usr/local/bin" and a["files"] == ["/usr/local/bin/etcd", "/usr/local/bin/etcdctl"]


def test_installed_files_follow_the_catalogue_install_dir_without_needing_a_digest(art, make_settings):
    config = make_settings({"nodes": NODES, "network": {"mode": "flannel"}})
    assert art.installed_files("cni-plugins", config) == [
        f"/opt/cni/bin/{n}" for n in ("bridge", "host-local", "loopback", "portmap")
    ]
    assert art.installed_files("flannel-cni-plugin", config) == ["/opt/cni/bin/flannel"]  # no digest is known
    assert art.installed_files("runc", config) == ["/usr/local/bin/runc"]


def test_mirror_rewrites_scheme_and_host_keeping_upstream_host_as_first_segment(art, make_settings):
    a = art.resolve("kubelet", settings(make_settings, mirror="http://mirror.example:8080/k8s/"))
    assert a["url"] == f"http://mirror.example:8080/k8s/dl.k8s.io/release/v{K8S_VERSION}/bin/linux/amd64/kubelet"
    assert a["upstream_url"] == f"https://dl.k8s.io/release/v{K8S_VERSION}/bin/linux/amd64/kubelet"
    assert art.mirror_url("https://github.com/a/b?x=1", "https://m") == "https://m/github.com/a/b?x=1"
    assert art.mirror_url("https://github.com/a/b", "") == "https://github.com/a/b"


def test_a_checksum_file_never_comes_through_the_mirror(art, make_settings):
    """A mirror that served both a file and the checksum it is checked against could vouch for anything."""
    config = settings(
        make_settings,
        mirror="http://mirror.example:8080",
        pins={"flannel-cni-plugin": {"1.7.1": {"amd64": {"url": "https://github.com/f/{version}/x.tgz"}}}},
        checksum_urls={"flannel-cni-plugin": "https://github.com/f/{version}/SHA256SUMS"},
    )
    a = art.resolve("flannel-cni-plugin", config)
    assert a["url"] == "http://mirror.example:8080/github.com/f/1.7.1/x.tgz"
    assert a["checksum_url"] == a["upstream_checksum_url"] == "https://github.com/f/1.7.1/SHA256SUMS"


def test_bad_mirror_url_is_rejected_naming_the_pillar_key(art, make_settings):
    with pytest.raises(SaltInvocationError, match="k8s:artifacts:mirror 'ftp://mirror'"):
        art.resolve("kubelet", settings(make_settings, mirror="ftp://mirror"))


def test_download_goes_through_the_mirror_path(art, http_server, make_settings, tmp_path):
    config = settings(
        make_settings,
        mirror=http_server.url("/mirror"),
        pins={"kubelet": {K8S_VERSION: {"amd64": {"sha256": sha(KUBELET)}}}},
    )
    a = art.resolve("kubelet", config)
    path = f"/mirror/dl.k8s.io/release/v{K8S_VERSION}/bin/linux/amd64/kubelet"
    assert a["url"] == http_server.url(path)
    http_server.serve(path, KUBELET)
    art.install(
        str(tmp_path / "kubelet"),
        a["url"],
        a["digest"],
        hash_type=a["hash_type"],
        cache_dir=None,
        user=None,
        group=None,
    )
    assert (tmp_path / "kubelet").read_bytes() == KUBELET
    assert http_server.requests == [path]


def test_entry_without_digest_is_refused_naming_the_pins_key(art, make_settings):
    config = settings(make_settings)
    with pytest.raises(CommandExecutionError) as exc:
        art.resolve("flannel-cni-plugin", config)
    assert "k8s:artifacts:pins:flannel-cni-plugin:1.7.1:amd64" in str(exc.value)
    assert "k8s:artifacts:checksum_urls:flannel-cni-plugin" in str(exc.value)


def test_null_pinned_digest_is_refused_naming_the_pins_key(art, make_settings):
    # A pillar pin of null overrides the catalogue's digest (merge_catalogue): nothing is left to verify against.
    config = settings(make_settings, pins={"crictl": {CRICTL: {"amd64": {"sha256": None}}}})
    with pytest.raises(CommandExecutionError, match=f"Pin one in k8s:artifacts:pins:crictl:{CRICTL}:amd64"):
        art.resolve("crictl", config)


def test_malformed_pinned_digest_is_refused_naming_the_key(art, make_settings):
    config = settings(make_settings, pins={"kubelet": {K8S_VERSION: {"amd64": {"sha256": "abc"}}}})
    with pytest.raises(CommandExecutionError, match=f"k8s:artifacts:pins:kubelet:{K8S_VERSION}:amd64:sha256: 'abc'"):
        art.resolve("kubelet", config)


# -- checksum files --------------------------------------------------------------------------------------------------
HEX = sha(b"x")
OTHER = sha(b"y")


@pytest.mark.parametrize(
    "text, expected",
    [
        (f"{HEX}\n", HEX),
        (f"{HEX}  kubelet\n", HEX),
        (f"{OTHER}  kubectl\n{HEX} *kubelet\n", HEX),
        (f"# SHA256SUMS\n{OTHER}  ./bin/kubectl\n{HEX}  ./bin/kubelet\n", HEX),
        (f"SHA256 (kubelet) = {HEX}\nSHA256 (kubectl) = {OTHER}\n", HEX),
        (f"{HEX.upper()}  kubelet\n", HEX),
    ],
)
def test_checksum_file_formats_are_parsed(art, text, expected):
    assert art.parse_checksums(text, "kubelet") == expected


@pytest.mark.parametrize(
    "text, error",
    [
        (f"{HEX}  kubectl\n", "no sha256 entry for 'kubelet'"),
        ("not a checksum\n", "no sha256 digest"),
        (f"{HEX}  kubelet\n{OTHER}  kubelet\n", "different digests"),
        (f"{sha(b'x')[:40]}  kubelet\n", "no sha256 digest"),
    ],
)
def test_checksum_file_without_a_usable_entry_is_refused(art, text, error):
    with pytest.raises(CommandExecutionError, match=error):
        art.parse_checksums(text, "kubelet")


def test_sha512_checksum_file_gives_a_sha512_digest(art):
    digest = hashlib.sha512(b"x").hexdigest()
    assert art.parse_checksums(f"{digest}  f.tgz\n", "f.tgz", "sha512") == digest


def flannel_opt_in(http_server, make_settings, sums):
    """flannel-cni-plugin has no digest in the catalogue: opt in to a SHA256SUMS served by the local server."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        info = tarfile.TarInfo("flannel-amd64")
        info.size = len(KUBE_PROXY)
        tf.addfile(info, io.BytesIO(KUBE_PROXY))
    data = buffer.getvalue()
    name = "cni-plugin-flannel-linux-amd64-v1.7.1.tgz"
    http_server.serve(f"/flannel/v1.7.1/{name}", data)
    http_server.serve("/flannel/v1.7.1/SHA256SUMS", sums(data, name).encode())
    config = settings(
        make_settings,
        pins={
            "flannel-cni-plugin": {
                "1.7.1": {
                    "amd64": {
                        "url": http_server.url("/flannel/v{version}/cni-plugin-flannel-linux-{arch}-v{version}.tgz")
                    }
                }
            }
        },
        checksum_urls={"flannel-cni-plugin": http_server.url("/flannel/v{version}/SHA256SUMS")},
    )
    return config, data


def test_checksum_url_opt_in_verifies_against_sha256sums_and_is_cached(art, http_server, make_settings, tmp_path):
    config, data = flannel_opt_in(
        http_server,
        make_settings,
        lambda data, name: f"{OTHER}  cni-plugin-flannel-linux-arm64-v1.7.1.tgz\n{sha(data)}  {name}\n",
    )
    a = art.resolve("flannel-cni-plugin", config)
    assert a["digest"] is None and a["checksum_url"] == http_server.url("/flannel/v1.7.1/SHA256SUMS")
    assert a["members"] == {"flannel": "flannel-amd64"}
    kwargs = {
        "digest": a["digest"],
        "hash_type": a["hash_type"],
        "checksum_url": a["checksum_url"],
        "cache_dir": str(tmp_path / "cache"),
        "user": None,
        "group": None,
    }
    art.extract(str(tmp_path / "cni"), a["url"], a["members"], **kwargs)
    assert (tmp_path / "cni" / "flannel").read_bytes() == KUBE_PROXY
    assert http_server.count() == 2
    again = art.extract(str(tmp_path / "cni"), a["url"], a["members"], **kwargs)
    assert again["changes"] == {} and http_server.count() == 2


def test_checksum_file_digest_mismatch_is_refused(art, http_server, make_settings, tmp_path):
    config, data = flannel_opt_in(http_server, make_settings, lambda data, name: f"{OTHER}  {name}\n")
    a = art.resolve("flannel-cni-plugin", config)
    with pytest.raises(CommandExecutionError, match=f"expected {OTHER}, got {sha(data)}"):
        art.extract(
            str(tmp_path / "cni"),
            a["url"],
            a["members"],
            a["digest"],
            checksum_url=a["checksum_url"],
            cache_dir=str(tmp_path / "cache"),
        )
    assert not (tmp_path / "cni").exists()


def test_checksum_file_is_not_used_when_a_digest_is_pinned(art, http_server, make_settings):
    config = settings(make_settings, checksum_urls={"kubelet": http_server.url("/SHA256SUMS")})
    a = art.resolve("kubelet", config)
    assert a["digest"] == CATALOGUE_KUBELET and a["checksum_url"] is None


def test_checksum_file_without_opt_in_is_refused(art, http_server, make_settings, tmp_path):
    config, _ = flannel_opt_in(http_server, make_settings, lambda data, name: f"{sha(data)}  {name}\n")
    del config["artifacts"]["checksum_urls"]["flannel-cni-plugin"]
    with pytest.raises(CommandExecutionError, match="k8s:artifacts:pins:flannel-cni-plugin:1.7.1:amd64"):
        art.resolve("flannel-cni-plugin", config)
    assert http_server.count() == 0


# -- mirror_populate -------------------------------------------------------------------------------------------------
def upstream_pins(http_server, kubelet_digest=None):
    http_server.serve(f"/dl/v{K8S_VERSION}/amd64/kubelet", KUBELET)
    http_server.serve(f"/dl/v{K8S_VERSION}/amd64/kube-proxy", KUBE_PROXY)
    return {
        "kubelet": {
            K8S_VERSION: {
                "amd64": {
                    "sha256": kubelet_digest or sha(KUBELET),
                    "url": http_server.url("/dl/v{version}/{arch}/kubelet"),
                }
            }
        },
        "kube-proxy": {
            K8S_VERSION: {
                "amd64": {"sha256": sha(KUBE_PROXY), "url": http_server.url("/dl/v{version}/{arch}/kube-proxy")}
            }
        },
    }


def test_mirror_populate_lays_out_host_and_path_and_serves_installs(art, http_server, make_settings, tmp_path):
    config = settings(make_settings, pins=upstream_pins(http_server))
    mirror = tmp_path / "mirror"
    result = art.mirror_populate(str(mirror), config, components=["kubelet", "kube-proxy"])
    assert [r["status"] for r in result["artifacts"]] == ["downloaded", "downloaded"]
    host = http_server.netloc
    assert (mirror / host / "dl" / f"v{K8S_VERSION}" / "amd64" / "kubelet").read_bytes() == KUBELET
    assert (mirror / host / "dl" / f"v{K8S_VERSION}" / "amd64" / "kube-proxy").read_bytes() == KUBE_PROXY

    again = art.mirror_populate(str(mirror), config, components=["kubelet", "kube-proxy"])
    assert [r["status"] for r in again["artifacts"]] == ["present", "present"]
    assert http_server.count() == 2

    # Serve the populated directory as the mirror; a node installs through it.
    http_server.serve_directory("/m", str(mirror))
    config["artifacts"]["mirror"] = http_server.url("/m")
    a = art.resolve("kubelet", config)
    assert a["url"] == http_server.url(f"/m/{host}/dl/v{K8S_VERSION}/amd64/kubelet")
    art.install(str(tmp_path / "bin" / "kubelet"), a["url"], a["digest"], cache_dir=None, user=None, group=None)
    assert (tmp_path / "bin" / "kubelet").read_bytes() == KUBELET
    assert http_server.count(f"/m/{host}/dl/v{K8S_VERSION}/amd64/kubelet") == 1


def test_mirror_populate_refuses_a_mismatch_and_still_mirrors_the_rest(art, http_server, make_settings, tmp_path):
    config = settings(make_settings, pins=upstream_pins(http_server, kubelet_digest="e" * 64))
    mirror = tmp_path / "mirror"
    with pytest.raises(CommandExecutionError) as exc:
        art.mirror_populate(str(mirror), config, components=["kubelet", "kube-proxy"])
    assert "kubelet (amd64)" in str(exc.value) and f"expected {'e' * 64}, got {sha(KUBELET)}" in str(exc.value)
    files = sorted(p.name for p in mirror.rglob("*") if p.is_file())
    assert files == ["kube-proxy"]


def test_mirror_populate_defaults_to_the_needed_components(http_server, make_settings, tmp_path):
    asked = []
    art = load("k8s_artifact", salt={"k8s.needed_components": lambda config: asked.append(config) or ["kubelet"]})
    config = settings(make_settings, pins=upstream_pins(http_server))
    result = art.mirror_populate(str(tmp_path / "mirror"), config)
    assert asked == [config]
    assert [r["component"] for r in result["artifacts"]] == ["kubelet"]
