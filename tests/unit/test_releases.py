"""Kubernetes releases: the catalogue's data, every version profile rendered, and the version support policy.

Every minor that profiles.yaml or the catalogue knows is built with the real k8s.settings over the real formula data
and rendered into every component spec, systemd unit and component configuration; the release-dependent values must
show up where the daemons read them. The policy: a minor outside the profiles is an error naming the key, an
out-of-support minor with a profile works with pillar digests and a warning, a new patch of a supported minor works
with pins (the exact pillar of the README, parsed from it)."""

import re

import pytest
import yaml

from tests.support.loader import load
from tests.unit.conftest import CATALOGUE, FORMULAS, INVENTORY, REPO, VERSIONS, data

PROFILES = data("profiles.yaml")
KUBE = [name for name, entry in CATALOGUE.items() if entry.get("version_key") == "kubernetes"]
FAKE_DIGEST = "e" * 64


def minor(version):
    return tuple(int(part) for part in str(version).split(".")[:2])


def text(m):
    return f"{m[0]}.{m[1]}"


CATALOGUE_MINORS = sorted({minor(v) for name in KUBE for v in CATALOGUE[name]["versions"]})
PROFILE_MINORS = sorted(minor(key) for key in PROFILES)
ALL_MINORS = sorted(set(CATALOGUE_MINORS) | set(PROFILE_MINORS))


def newest(versions):
    return max(versions, key=lambda v: tuple(int(p) for p in v.split(".")))


def release_of(m):
    """The version a test runs for minor ``m``: the catalogue's patch, or .0 of an out-of-support minor."""
    versions = [v for v in CATALOGUE["kubelet"]["versions"] if minor(v) == m]
    return newest(versions) if versions else f"{text(m)}.0"


def kube_pins(version, arches=("amd64",)):
    return {name: {version: {arch: {"sha256": FAKE_DIGEST} for arch in arches}} for name in KUBE}


@pytest.fixture(scope="module")
def conf():
    return load("k8s_conf")


# -- the catalogue ----------------------------------------------------------------------------------------------------
def test_supported_minors_are_the_newest_three_and_each_has_a_profile():
    assert len(CATALOGUE_MINORS) == 3
    assert [m[1] for m in CATALOGUE_MINORS] == list(range(CATALOGUE_MINORS[0][1], CATALOGUE_MINORS[0][1] + 3))
    assert set(CATALOGUE_MINORS) <= set(PROFILE_MINORS)
    assert max(PROFILE_MINORS) == max(CATALOGUE_MINORS), "a profile newer than any catalogued release"


def test_every_kubernetes_binary_has_the_same_releases_for_both_arches():
    releases = {name: set(CATALOGUE[name]["versions"]) for name in KUBE}
    assert len({frozenset(v) for v in releases.values()}) == 1, releases
    assert len(KUBE) == 6
    for name in KUBE:
        for version, arches in CATALOGUE[name]["versions"].items():
            assert set(arches) == {"amd64", "arm64"}, (name, version)
            for arch, pin in arches.items():
                assert re.fullmatch(r"[0-9a-f]{64}", pin["sha256"]), (name, version, arch)


def test_every_digest_is_distinct():
    digests = [
        pin.get("sha256") or pin.get("sha512")
        for entry in CATALOGUE.values()
        for arches in (entry.get("versions") or {}).values()
        for pin in arches.values()
    ]
    assert len(digests) == len(set(digests))


def test_every_catalogue_version_names_the_source_of_its_digests():
    """The line above each version names where its digests were copied from: repository@commit path, or a URL."""
    lines = (FORMULAS / "catalogue.yaml").read_text().splitlines()
    source = re.compile(r"\s*# .*(\b[\w.-]+/[\w.-]+@[0-9a-f]{40} \S+|https://\S+)")
    checked = 0
    in_versions = False
    for index, line in enumerate(lines):
        if re.fullmatch(r"    versions:( \{\})?", line):
            in_versions = True
        elif re.fullmatch(r"  \S.*", line):
            in_versions = False
        elif in_versions and re.fullmatch(r'      "[0-9.]+":', line):
            above = index - 1
            while lines[above].lstrip().startswith("# (the same digests"):
                above -= 1
            component_comment = any("THIRD-PARTY" in lines[i] for i in range(max(0, index - 12), index))
            assert source.match(lines[above]) or component_comment, (index + 1, line)
            checked += 1
    assert checked >= 20


def test_defaults_and_pillar_example_install_the_newest_catalogue_release_of_everything():
    example = yaml.safe_load((REPO / "pillar.example").read_text())["k8s"]["versions"]
    for key in ("kubernetes", "etcd", "containerd", "runc", "cni_plugins", "crictl"):
        component = next(n for n, e in CATALOGUE.items() if e.get("version_key", n) == key)
        assert VERSIONS[key] == newest(CATALOGUE[component]["versions"]), key
        assert example[key] == VERSIONS[key], key


# -- every profile, rendered ------------------------------------------------------------------------------------------
# What each release must render, by the first minor it applies to (independent of profiles.yaml, which it checks).
def expected(m):
    return {
        "scheduler_api": "kubescheduler.config.k8s.io/"
        + ("v1beta1" if m < (1, 22) else "v1beta2" if m < (1, 25) else "v1"),
        "remote_runtime_flag": m < (1, 24),
        "endpoint_in_config": m >= (1, 27),
        "insecure_port_flags": m < (1, 24),
        "pod_security": None
        if m < (1, 23)
        else "pod-security.admission.config.k8s.io/" + ("v1beta1" if m < (1, 25) else "v1"),
        "super_admin": m >= (1, 29),
        "taint": "node-role.kubernetes.io/" + ("master" if m < (1, 24) else "control-plane"),
        "fail_cgroup_v1": True if m >= (1, 35) else None,
        "nftables": "unavailable" if m < (1, 31) else "supported",
        "ipvs": "deprecated" if m >= (1, 35) else "supported",
        "containerd_floor": "2.0.0" if m >= (1, 36) else "",
        "pause": "k8s.gcr.io/pause:3.2"
        if m < (1, 24)
        else "registry.k8s.io/pause:" + ("3.6" if m < (1, 31) else "3.10" if m < (1, 34) else "3.10.1"),
        "coredns": "k8s.gcr.io/coredns:1.7.0"
        if m < (1, 24)
        else "registry.k8s.io/coredns/coredns:"
        + (
            "v1.8.6"
            if m < (1, 31)
            else "v1.11.3"
            if m < (1, 33)
            else "v1.12.1"
            if m < (1, 35)
            else {(1, 35): "v1.12.4", (1, 36): "v1.14.2"}.get(m, "v1.14.4")
        ),
    }


def rendered(conf, config):
    """Every spec kubesalt builds for the small inventory, with its unit text; raises if anything fails to build."""
    specs = {}
    for node in ("master01", "worker01"):
        makers = [conf.containerd, conf.kubelet, conf.kube_proxy, conf.network]
        if node == "master01":
            makers += [conf.etcd, conf.apiserver, conf.controller_manager, conf.scheduler]
        for make in makers:
            spec = make(config, node)
            spec["unit_text"] = conf.unit(spec)
            specs[(node, spec["unit"])] = spec
    return specs


def file_yaml(spec, suffix):
    (path,) = [p for p in spec["files"] if p.endswith(suffix)]
    return yaml.safe_load(spec["files"][path]["contents"])


@pytest.mark.parametrize("m", ALL_MINORS, ids=text)
def test_every_release_renders_validates_and_shows_its_differences(conf, make_settings, k8s_module, m):
    version = release_of(m)
    supported = m in CATALOGUE_MINORS
    pillar = {"nodes": INVENTORY, "versions": {"kubernetes": version}}
    if not supported:
        pillar["artifacts"] = {"pins": kube_pins(version)}
    config = make_settings(pillar, minion_id="master01", validate=True)
    result = k8s_module.check(config)
    assert result["errors"] == []
    out_of_support = [w for w in result["warnings"] if w.startswith("k8s:versions:kubernetes:")]
    assert bool(out_of_support) != supported, result["warnings"]
    want = expected(m)

    specs = rendered(conf, config)
    api = specs[("master01", "kube-apiserver")]
    scheduler = specs[("master01", "kube-scheduler")]
    cm = specs[("master01", "kube-controller-manager")]
    kubelet = specs[("master01", "kubelet")]
    worker_kubelet = specs[("worker01", "kubelet")]

    # kube-scheduler: KubeSchedulerConfiguration version; insecure port off where it existed
    assert file_yaml(scheduler, "/kube-scheduler.yaml")["apiVersion"] == want["scheduler_api"]
    assert ("--port=0" in scheduler["flags"]) == want["insecure_port_flags"]
    assert ("--port=0" in cm["flags"]) == want["insecure_port_flags"]
    assert ("--insecure-port=0" in api["flags"]) == want["insecure_port_flags"]
    # kube-apiserver: PodSecurity admission configuration
    admission = [p for p in api["files"] if p.endswith("/admission.yaml")]
    if want["pod_security"] is None:
        assert admission == [] and not any(f.startswith("--admission-control-config-file") for f in api["flags"])
    else:
        plugin = file_yaml(api, "/admission.yaml")["plugins"][0]
        assert plugin["configuration"]["apiVersion"] == want["pod_security"]
        assert conf.admission_config(config)["plugins"][0] == plugin
    # kubelet: CRI endpoint as a field or a flag, the remote-runtime flag, cgroup v1, the master taint
    for spec in (kubelet, worker_kubelet):
        kcfg = file_yaml(spec, "/kubelet.yaml")
        assert ("containerRuntimeEndpoint" in kcfg) == want["endpoint_in_config"]
        assert any(f.startswith("--container-runtime-endpoint=") for f in spec["flags"]) != want["endpoint_in_config"]
        assert ("--container-runtime=remote" in spec["flags"]) == want["remote_runtime_flag"]
        assert kcfg.get("failCgroupV1") is want["fail_cgroup_v1"]
        assert kcfg["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert file_yaml(kubelet, "/kubelet.yaml")["registerWithTaints"] == [{"key": want["taint"], "effect": "NoSchedule"}]
    assert "registerWithTaints" not in file_yaml(worker_kubelet, "/kubelet.yaml")
    assert config["master_taint"] == want["taint"]
    # kube-proxy: the configuration it reads, and the modes the release has
    proxy = file_yaml(specs[("worker01", "kube-proxy")], "/kube-proxy.yaml")
    assert proxy["apiVersion"] == "kubeproxy.config.k8s.io/v1alpha1" and proxy["mode"] == "iptables"
    assert config["kube_proxy"]["modes"] == {
        "iptables": "supported",
        "ipvs": want["ipvs"],
        "nftables": want["nftables"],
    }
    # the admin credential split of 1.29
    admin_files = conf.admin(config, "master01")
    assert any(p.endswith("/super-admin.conf") for p in admin_files) == want["super_admin"]
    assert conf.bootstrap_identity(config) == ("super-admin" if want["super_admin"] else "admin")
    # images: the sandbox in containerd's config.toml, CoreDNS in its Deployment
    assert (
        f'"{want["pause"]}"'
        in specs[("worker01", "containerd")]["files"][
            next(p for p in specs[("worker01", "containerd")]["files"] if p.endswith("/config.toml"))
        ]["contents"]
    )
    addon = yaml.safe_load((FORMULAS / "addons" / "coredns.yaml").read_text())
    deployment = next(o for o in conf.coredns_objects(config, addon) if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == want["coredns"]
    assert config["container_runtime"]["containerd_deprecated_below"] == want["containerd_floor"]
    # everything kubesalt writes for the node parses
    for spec in specs.values():
        for path, file in spec["files"].items():
            if path.endswith((".yaml", ".conf")):
                assert isinstance(yaml.safe_load(file["contents"]), dict), path


# -- the support policy -----------------------------------------------------------------------------------------------
def _check(make_settings, k8s_module, **pillar):
    return k8s_module.check(make_settings({"nodes": INVENTORY, **pillar}))


def test_releases_are_derived_from_profiles_and_the_shipped_catalogue_not_from_pins(make_settings):
    config = make_settings({"nodes": INVENTORY, "artifacts": {"pins": kube_pins("1.38.0")}})
    assert config["releases"] == {
        "profiles": [text(m) for m in PROFILE_MINORS],
        "supported": [text(m) for m in CATALOGUE_MINORS],
    }


@pytest.mark.parametrize("which", ["newer", "older"])
def test_a_minor_without_a_profile_is_an_error_naming_the_key_and_the_supported_minors(
    make_settings, k8s_module, which
):
    low, high = PROFILE_MINORS[0], PROFILE_MINORS[-1]
    version = f"1.{high[1] + 1}.0" if which == "newer" else f"1.{low[1] - 1}.16"
    # even with every digest pinned: kubesalt does not know how to configure that release
    errors = _check(
        make_settings, k8s_module, versions={"kubernetes": version}, artifacts={"pins": kube_pins(version)}
    )["errors"]
    supported = ", ".join(text(m) for m in CATALOGUE_MINORS)
    assert errors == [
        f"k8s:versions:kubernetes: {version} is {which} than every Kubernetes release this kubesalt knows (version "
        f"profiles {text(low)} to {text(high)}); supported minors: {supported}. Pick one of them (README: Versions "
        "and support)"
    ]


def test_an_out_of_support_minor_needs_pillar_digests_and_warns(make_settings, k8s_module):
    version = "1.20.2"  # the lab's
    bare = _check(make_settings, k8s_module, versions={"kubernetes": version})
    assert {e.split(": ")[0] for e in bare["errors"]} == {f"k8s:artifacts:pins:{n}:{version}:amd64" for n in KUBE}
    pinned = _check(make_settings, k8s_module, versions={"kubernetes": version}, artifacts={"pins": kube_pins(version)})
    assert pinned["errors"] == []
    for result in (bare, pinned):
        (warning,) = [w for w in result["warnings"] if w.startswith("k8s:versions:kubernetes:")]
        assert f"{version} is out of upstream support" in warning and "k8s:artifacts:pins" in warning
        assert ", ".join(text(m) for m in CATALOGUE_MINORS) in warning


def test_settings_log_the_out_of_support_warning_and_render(make_settings, k8s_module, caplog):
    version = "1.20.2"
    with caplog.at_level("WARNING", logger=k8s_module.log.name):
        config = make_settings(
            {"nodes": INVENTORY, "versions": {"kubernetes": version}, "artifacts": {"pins": kube_pins(version)}},
            validate=True,
        )
    assert config["versions"]["kubernetes"] == version
    assert any("out of upstream support" in r.getMessage() for r in caplog.records), caplog.text


def _readme_pillar(title):
    """The YAML block that follows ``title`` in README's "Versions and support" section."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Versions and support") :]
    block = section[section.index(title) :]
    return yaml.safe_load(block[block.index("```yaml") + 7 : block.index("```", block.index("```yaml") + 7)])["k8s"]


def _fill(value):
    """The README's <placeholders> replaced with a well-formed digest, as a user fills them in."""
    if isinstance(value, dict):
        return {k: _fill(v) for k, v in value.items()}
    return FAKE_DIGEST if isinstance(value, str) and value.startswith("<") else value


def test_a_new_patch_of_a_supported_minor_needs_pins_and_the_readme_pillar_is_enough(make_settings, k8s_module):
    pillar = _fill(_readme_pillar("a new patch release"))
    version = pillar["versions"]["kubernetes"]
    assert minor(version) in CATALOGUE_MINORS and version not in CATALOGUE["kubelet"]["versions"]
    bare = _check(make_settings, k8s_module, versions={"kubernetes": version})
    assert {e.split(": ")[0] for e in bare["errors"]} == {f"k8s:artifacts:pins:{n}:{version}:amd64" for n in KUBE}
    assert _check(make_settings, k8s_module, **pillar) == {"errors": [], "warnings": []}
    # arm64 nodes need arm64 entries too: the errors name them
    arm = _check(make_settings, k8s_module, arch="arm64", **pillar)["errors"]
    assert {e.split(": ")[0] for e in arm} == {f"k8s:artifacts:pins:{n}:{version}:arm64" for n in KUBE}


def test_the_readme_checksum_file_alternative_validates(make_settings, k8s_module, art):
    pillar = _readme_pillar("official checksum files")
    version = pillar["versions"]["kubernetes"]
    config = make_settings({"nodes": INVENTORY, **pillar})
    assert k8s_module.check(config) == {"errors": [], "warnings": []}
    resolved = art.resolve("kubelet", config)
    assert resolved["digest"] is None
    assert resolved["checksum_url"] == f"https://dl.k8s.io/release/v{version}/bin/linux/amd64/kubelet.sha256"


@pytest.mark.parametrize(
    "version,mode,outcome",
    [
        ("1.30.0", "nftables", "error"),
        ("1.31.0", "nftables", None),
        ("1.34.0", "ipvs", None),
        (VERSIONS["kubernetes"], "ipvs", "warning"),
        (VERSIONS["kubernetes"], "nftables", None),
    ],
)
def test_kube_proxy_modes_follow_the_release(make_settings, k8s_module, version, mode, outcome):
    pins = {} if minor(version) in CATALOGUE_MINORS else kube_pins(version)
    result = _check(
        make_settings, k8s_module, versions={"kubernetes": version}, kube_proxy={"mode": mode}, artifacts={"pins": pins}
    )
    found = {
        "error": [e for e in result["errors"] if e.startswith("k8s:kube_proxy:mode:")],
        "warning": [w for w in result["warnings"] if w.startswith("k8s:kube_proxy:mode:")],
    }
    for kind, messages in found.items():
        assert bool(messages) == (kind == outcome), (kind, messages)
    if outcome == "error":
        assert found["error"] == [
            f"k8s:kube_proxy:mode: 'nftables' is not available in Kubernetes {version}; use iptables or ipvs"
        ]
    if outcome == "warning":
        assert "'ipvs' is deprecated" in found["warning"][0] and "nftables" in found["warning"][0]


def test_nftables_mode_installs_the_nft_command_on_nodes(conf, make_settings):
    base = make_settings({"nodes": INVENTORY})
    assert conf.node_packages(base) == base["node_packages"]
    nft = make_settings({"nodes": INVENTORY, "kube_proxy": {"mode": "nftables"}})
    assert conf.node_packages(nft) == [*base["node_packages"], "nftables"]
    again = make_settings({"nodes": INVENTORY, "kube_proxy": {"mode": "nftables"}, "node_packages": ["nftables"]})
    assert conf.node_packages(again) == ["nftables"]


def test_containerd_1x_is_a_warning_from_kubernetes_1_36(make_settings, k8s_module):
    old = min(CATALOGUE["containerd"]["versions"], key=lambda v: tuple(int(p) for p in v.split(".")))
    assert old.startswith("1.")
    by_minor = {}
    for m in CATALOGUE_MINORS:
        result = _check(make_settings, k8s_module, versions={"kubernetes": release_of(m), "containerd": old})
        assert result["errors"] == []
        by_minor[m] = [w for w in result["warnings"] if w.startswith("k8s:versions:containerd:")]
    assert {m: bool(w) for m, w in by_minor.items()} == {m: m >= (1, 36) for m in CATALOGUE_MINORS}
    # the distribution's package: its version is not known here, so nothing to say
    packaged = _check(make_settings, k8s_module, versions={"containerd": old}, container_runtime={"install": "package"})
    assert not [w for w in packaged["warnings"] if "containerd" in w]


def test_a_pillar_can_override_a_profile_field_of_the_kubelet(conf, make_settings):
    config = make_settings(
        {"nodes": INVENTORY, "kubelet": {"config": {"failCgroupV1": False}}}, minion_id="worker01", validate=True
    )
    assert conf.kubelet_config(config, "worker01")["failCgroupV1"] is False
