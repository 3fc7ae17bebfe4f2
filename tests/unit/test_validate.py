"""k8s.settings / k8s.check: the cluster data model and its validation, on the real defaults and catalogue."""

import copy

import pytest
import yaml
from salt.exceptions import CommandExecutionError

from tests.unit.conftest import INVENTORY, REPO, data

# A Kubernetes minor just past each end of profiles.yaml: kubesalt has no profile for it.
_PROFILE_MINORS = sorted(int(key.split(".")[1]) for key in data("profiles.yaml"))
TOO_NEW, TOO_OLD = f"1.{_PROFILE_MINORS[-1] + 1}.0", f"1.{_PROFILE_MINORS[0] - 1}.16"


def _pillar(**changes):
    pillar = {"nodes": copy.deepcopy(INVENTORY)}
    for path, value in changes.items():
        keys = path.split("__")
        node = pillar
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return pillar


def test_defaults_with_a_small_inventory_are_valid(make_settings, k8s_module):
    result = k8s_module.check(make_settings())
    assert result == {"errors": [], "warnings": []}


def test_pillar_example_is_valid(make_settings, k8s_module):
    example = yaml.safe_load((REPO / "pillar.example").read_text())["k8s"]
    result = k8s_module.check(make_settings(example))
    assert result["errors"] == []


def test_roles_and_ca_minion_come_from_the_pillar_inventory(make_settings):
    cluster = make_settings(minion_id="worker01")["cluster"]
    assert cluster["masters"] == ["master01"]
    assert cluster["workers"] == ["worker01", "worker02"]
    assert cluster["etcd_members"] == ["master01"]
    assert cluster["ca_minion"] == "master01"
    assert cluster["api_service_ip"] == "10.32.0.1"
    assert cluster["node"] == INVENTORY["worker01"]


def test_pod_subnet_follows_the_node_address_so_adding_nodes_moves_nothing(make_settings):
    before = make_settings()["cluster"]["pod_cidrs"]
    pillar = _pillar()
    pillar["nodes"]["aaa-new"] = {"roles": ["worker"], "ip": "10.240.0.5"}
    after = make_settings(pillar)["cluster"]["pod_cidrs"]
    assert after["aaa-new"] == "10.200.5.0/24"
    assert {k: after[k] for k in before} == before


def test_pinned_pod_cidr_wins(make_settings):
    pillar = _pillar()
    pillar["nodes"]["worker01"]["pod_cidr"] = "10.200.200.0/24"
    assert make_settings(pillar)["cluster"]["pod_cidrs"]["worker01"] == "10.200.200.0/24"


def test_version_profile_applies_between_defaults_and_pillar(make_settings):
    old = make_settings(_pillar(versions__kubernetes="1.20.2"))
    assert old["scheduler"]["config_api_version"] == "kubescheduler.config.k8s.io/v1beta1"
    assert old["kubelet"]["runtime_flags"] == ["--container-runtime=remote"]
    new = make_settings()
    assert new["scheduler"]["config_api_version"] == "kubescheduler.config.k8s.io/v1"
    assert new["kubelet"]["runtime_flags"] == []
    pinned = make_settings(_pillar(versions__kubernetes="1.20.2", scheduler__config_api_version="x/v9"))
    assert pinned["scheduler"]["config_api_version"] == "x/v9"


def test_fs_root_prefixes_every_path(make_settings):
    config = make_settings(_pillar(fs_root="/tmp/node1"))
    assert config["paths"]["pki_dir"] == "/tmp/node1/etc/kubernetes/pki"
    assert config["artifacts"]["cache_dir"].startswith("/tmp/node1/")


def test_settings_raise_with_every_problem_listed(make_settings):
    pillar = _pillar(networks__pod_cidr="10.32.0.0/16", pki__ca_days=10)
    with pytest.raises(CommandExecutionError) as exc:
        make_settings(pillar, validate=True)
    text = str(exc.value)
    assert "nothing was changed" in text
    assert "k8s:networks:pod_cidr" in text and "k8s:pki:ca_days" in text


def _nodes(**nodes):
    return {"nodes": nodes}


# Each broken configuration, and the key + rule its error must name. Keep ids descriptive: the list is the
# bad-input catalogue the README counts.
BROKEN = {
    "malformed_pod_cidr": (
        _pillar(networks__pod_cidr="10.200.0.0/33"),
        "k8s:networks:pod_cidr: '10.200.0.0/33' is not",
    ),
    "host_bits_in_cidr": (_pillar(networks__service_cidr="10.32.0.1/24"), "k8s:networks:service_cidr: '10.32.0.1/24'"),
    "pod_overlaps_service": (
        _pillar(networks__pod_cidr="10.32.0.0/16"),
        "k8s:networks:pod_cidr: 10.32.0.0/16 overlaps k8s:networks:service_cidr",
    ),
    "node_overlaps_pod": (
        _pillar(networks__node_cidr="10.200.1.0/24"),
        "k8s:networks:node_cidr: 10.200.1.0/24 overlaps k8s:networks:pod_cidr",
    ),
    "dns_ip_outside_service_cidr": (
        _pillar(networks__cluster_dns_ip="10.33.0.10"),
        "k8s:networks:cluster_dns_ip: 10.33.0.10 is outside k8s:networks:service_cidr",
    ),
    "dns_ip_is_api_service_ip": (
        _pillar(networks__cluster_dns_ip="10.32.0.1"),
        "k8s:networks:cluster_dns_ip: 10.32.0.1 is the API service IP",
    ),
    "pod_cidr_too_small": (
        _pillar(networks__pod_cidr="10.200.0.0/23"),
        "k8s:networks:pod_cidr: 10.200.0.0/23 holds only 2 node subnets of /24, but k8s:nodes has 3",
    ),
    "node_host_number_beyond_pod_subnets": (
        _pillar(networks__pod_cidr="10.200.0.0/20"),
        "k8s:nodes:worker01:ip: host number of 10.240.0.21 in 10.240.0.0/24 is beyond the 16",
    ),
    "bad_node_port_range": (_pillar(networks__node_port_range="32767-30000"), "k8s:networks:node_port_range"),
    "unknown_role": (
        _nodes(
            master01={"roles": ["master", "etcd"], "ip": "10.240.0.11"},
            worker01={"roles": ["wroker"], "ip": "10.240.0.21"},
        ),
        "k8s:nodes:worker01:roles: 'wroker' is not a known role",
    ),
    "no_master": (_nodes(e1={"roles": ["etcd", "worker"], "ip": "10.240.0.11"}), "no node has the 'master' role"),
    "no_etcd_member": (_nodes(m1={"roles": ["master"], "ip": "10.240.0.11"}), "no node has the 'etcd' role"),
    "node_listed_twice_same_ip": (
        _nodes(
            master01={"roles": ["master", "etcd"], "ip": "10.240.0.11"},
            master01b={"roles": ["worker"], "ip": "10.240.0.11"},
        ),
        "k8s:nodes:master01b:ip: 10.240.0.11 is already used by k8s:nodes:master01",
    ),
    "node_listed_twice_same_name": (
        _nodes(
            master01={"roles": ["master", "etcd"], "ip": "10.240.0.11"},
            w1={"roles": ["worker"], "ip": "10.240.0.21", "names": ["master01"]},
        ),
        "name 'master01' is already used by k8s:nodes:master01",
    ),
    "node_ip_outside_node_cidr": (
        _nodes(master01={"roles": ["master", "etcd"], "ip": "192.168.7.1"}),
        "k8s:nodes:master01:ip: 192.168.7.1 is outside k8s:networks:node_cidr",
    ),
    "node_name_not_dns": (
        _nodes(Master_01={"roles": ["master", "etcd"], "ip": "10.240.0.11"}),
        "k8s:nodes: key 'Master_01' is not a Kubernetes node name",
    ),
    "bad_kubernetes_version": (
        _pillar(versions__kubernetes="v1.34"),
        "k8s:versions:kubernetes: 'v1.34' is not a MAJOR.MINOR.PATCH version",
    ),
    "kubernetes_newer_than_every_profile": (
        _pillar(versions__kubernetes=TOO_NEW),
        f"k8s:versions:kubernetes: {TOO_NEW} is newer than every Kubernetes release this kubesalt knows",
    ),
    "kubernetes_older_than_every_profile": (
        _pillar(versions__kubernetes=TOO_OLD),
        f"k8s:versions:kubernetes: {TOO_OLD} is older than every Kubernetes release this kubesalt knows",
    ),
    "kube_proxy_mode_the_release_lacks": (
        _pillar(versions__kubernetes="1.30.14", kube_proxy__mode="nftables"),
        "k8s:kube_proxy:mode: 'nftables' is not available in Kubernetes 1.30.14",
    ),
    "unknown_kube_proxy_mode": (_pillar(kube_proxy__mode="userspace"), "k8s:kube_proxy:mode: 'userspace' is not"),
    "missing_checksum": (
        _pillar(versions__etcd="3.4.23"),
        "k8s:artifacts:pins:etcd:3.4.23:amd64: no pinned sha256/sha512 digest",
    ),
    "flannel_cni_plugin_has_no_known_digest": (
        _pillar(network__mode="flannel"),
        "k8s:artifacts:pins:flannel-cni-plugin:1.7.1:amd64",
    ),
    "malformed_pinned_digest": (
        _pillar(artifacts__pins={"runc": {"1.4.3": {"amd64": {"sha256": "abc"}}}}),
        "k8s:artifacts:pins:runc:1.4.3:amd64:sha256: 'abc' is not a lowercase hex",
    ),
    "malformed_pin_for_a_version_not_in_use": (
        _pillar(artifacts__pins={"etcd": {"9.9.9": {"arm64": {"sha512": "XYZ"}}}}),
        "k8s:artifacts:pins:etcd:9.9.9:arm64:sha512: 'XYZ' is not a lowercase hex",
    ),
    "ca_shorter_than_leaf": (_pillar(pki__ca_days=300), "k8s:pki:ca_days: a CA lifetime of 300 days is shorter"),
    "unknown_key_type": (_pillar(pki__key_type="dsa-1024"), "k8s:pki:key_type: 'dsa-1024' is not supported"),
    "malformed_extra_san": (
        _pillar(pki__apiserver_extra_sans=["bad name!"]),
        "k8s:pki:apiserver_extra_sans: 'bad name!'",
    ),
    "ca_minion_not_a_node": (_pillar(pki__ca_minion="ghost"), "k8s:pki:ca_minion: 'ghost' is not a node"),
    "renewal_interval_not_whole_seconds": (
        _pillar(pki__renewal={"interval": 1.5}),
        "k8s:pki:renewal:interval: '1.5' is not a whole number of seconds",
    ),
    "renewal_switch_not_a_bool": (
        _pillar(pki__renewal={"enabled": "yes"}),
        "k8s:pki:renewal:enabled: 'yes' is not true",
    ),
    "malformed_mirror_url": (_pillar(artifacts__mirror="ftp//mirror"), "k8s:artifacts:mirror: 'ftp//mirror'"),
    "unknown_network_mode": (_pillar(network__mode="weave"), "k8s:network:mode: 'weave' is not supported"),
    "unknown_arch": (_pillar(arch="s390x"), "k8s:arch: 's390x' is not supported"),
    "relative_path": (_pillar(paths__pki_dir="etc/pki"), "k8s:paths:pki_dir: 'etc/pki' is not an absolute path"),
    "apiserver_endpoint_not_https": (
        _pillar(apiserver__endpoint="http://lb:6443"),
        "k8s:apiserver:endpoint: 'http://lb:6443' is not an https URL",
    ),
    "apiserver_port_out_of_range": (_pillar(apiserver__port=70000), "k8s:apiserver:port: '70000' is not a TCP port"),
    "extra_flag_without_dashes": (
        _pillar(kubelet__extra_flags=["v=2"]),
        "k8s:kubelet:extra_flags: 'v=2' is not a --flag",
    ),
    "unknown_runtime_install": (
        _pillar(container_runtime__install="docker"),
        "k8s:container_runtime:install: 'docker' is not supported",
    ),
    "image_archive_without_digest": (
        _pillar(container_runtime__images=[{"name": "x/pause:1", "url": "http://m/p.tar"}]),
        "k8s:container_runtime:images:0:sha256: missing",
    ),
    "registry_mirror_not_a_url": (
        _pillar(container_runtime__registries={"docker.io": {"mirrors": ["mirror:5000"]}}),
        "k8s:container_runtime:registries:docker.io:mirrors: 'mirror:5000'",
    ),
    "registry_ca_not_pem": (
        _pillar(container_runtime__registries={"r.example": {"ca": "not a cert"}}),
        "k8s:container_runtime:registries:r.example:ca: 'not a cert' is not a PEM certificate",
    ),
    "bad_worker_batch": (_pillar(worker_batch="all"), "k8s:worker_batch: 'all' is not a node count"),
    "relative_admin_kubeconfig_path": (
        _pillar(admin__kubeconfig_paths=["kube/config"]),
        "k8s:admin:kubeconfig_paths: 'kube/config' is not an absolute path",
    ),
    # -- hostile input: every value reaches a unit, a flag, a config file or a path --------------------------------
    "node_ip_zone_id_with_a_line_break": (
        _nodes(
            master01={"roles": ["master", "etcd"], "ip": "10.240.0.11"},
            worker01={"roles": ["worker"], "ip": "fe80::1%eth0\nExecStartPre=/bin/sh -c id"},
        ),
        "k8s:nodes:worker01:ip: 'fe80::1%eth0\\nExecStartPre=/bin/sh -c id' contains a control character",
    ),
    "node_ip_with_a_zone_id": (
        _nodes(master01={"roles": ["master", "etcd"], "ip": "fe80::1%eth0"}),
        "k8s:nodes:master01:ip: 'fe80::1%eth0' is not an IP address (no zone id)",
    ),
    "version_with_a_trailing_line_break": (
        _pillar(versions__kubernetes="1.34.10\n"),
        "k8s:versions:kubernetes: '1.34.10\\n' contains a control character",
    ),
    "cluster_name_with_a_trailing_line_break": (_pillar(cluster_name="prod\n"), "k8s:cluster_name: 'prod\\n'"),
    "extra_flag_that_adds_a_unit_directive": (
        _pillar(apiserver__extra_flags=["--v=2\nExecStartPost=/bin/sh -c id"]),
        "k8s:apiserver:extra_flags: '--v=2\\nExecStartPost=/bin/sh -c id' contains a control character",
    ),
    "extra_flag_that_is_two_flags": (
        _pillar(kubelet__extra_flags=["--v=2 --anonymous-auth"]),
        None,  # allowed: the unit writer quotes it into ONE argument (tests/unit/test_conf.py checks)
    ),
    "path_with_parent_components": (
        _pillar(paths__config_dir="/etc/kubernetes/../../root"),
        "k8s:paths:config_dir: '/etc/kubernetes/../../root' is not an absolute path",
    ),
    "path_with_whitespace": (
        _pillar(paths__kubelet_dir="/var/lib/kube let"),
        "k8s:paths:kubelet_dir: '/var/lib/kube let'",
    ),
    "root_as_a_kubesalt_directory": (_pillar(paths__config_dir="/"), "k8s:paths:config_dir: '/' is a system directory"),
    "etc_as_a_kubesalt_directory": (_pillar(paths__pki_dir="/etc"), "k8s:paths:pki_dir: '/etc' is a system directory"),
    "unknown_key_with_a_suggestion": (
        _pillar(apiserver__extra_flag=["--v=2"]),
        "k8s:apiserver:extra_flag: unknown key; did you mean 'extra_flags'?",
    ),
    "unknown_top_level_key": (_pillar(worker_btach=5), "k8s:worker_btach: unknown key; did you mean 'worker_batch'?"),
    "unknown_node_key": (
        _nodes(master01={"roles": ["master", "etcd"], "ip": "10.240.0.11", "role": ["worker"]}),
        "k8s:nodes:master01:role: unknown key; did you mean 'roles'?",
    ),
    "node_id_uppercase": (
        _nodes(Master01={"roles": ["master", "etcd"], "ip": "10.240.0.11"}),
        "k8s:nodes: key 'Master01' is not a Kubernetes node name",
    ),
    "node_id_too_long_for_a_certificate_cn": (
        _nodes(**{"m" * 53: {"roles": ["master", "etcd"], "ip": "10.240.0.11"}}),
        f"k8s:nodes: key '{'m' * 53}' is not a Kubernetes node name of at most 52 characters",
    ),
    "node_without_an_ip": (_nodes(master01={"roles": ["master", "etcd"]}), "k8s:nodes:master01:ip: missing"),
    "roles_not_a_list": (
        _nodes(master01={"roles": 5, "ip": "10.240.0.11"}),
        "k8s:nodes:master01:roles: '5' is not a list",
    ),
    "apiserver_on_the_etcd_port": (
        _pillar(apiserver__port=2379),
        "k8s:etcd:client_port: 2379 is already the port of k8s:apiserver:port",
    ),
    "apiserver_on_the_kubelet_port": (
        _pillar(apiserver__port=10250),
        "k8s:apiserver:port: 10250 is already the port of kubelet",
    ),
    "node_port_range_over_the_apiserver": (
        _pillar(networks__node_port_range="6000-7000"),
        "k8s:networks:node_port_range: 6000-7000 includes port 6443 of k8s:apiserver:port",
    ),
    "address_family_mix": (
        _pillar(networks__service_cidr="fd00:32::/112", networks__cluster_dns_ip="fd00:32::a"),
        "kubesalt builds single-stack clusters",
    ),
    "ca_minion_not_a_master": (_pillar(pki__ca_minion="worker01"), "k8s:pki:ca_minion: 'worker01' is not a master"),
    "sandbox_image_with_a_space": (
        _pillar(container_runtime__sandbox_image="registry.k8s.io/pause:3.10 --x"),
        "k8s:container_runtime:sandbox_image: 'registry.k8s.io/pause:3.10 --x' is not an image reference",
    ),
    "registry_host_with_a_path": (
        _pillar(container_runtime__registries={"r.example/../../etc": {"mirrors": []}}),
        "k8s:container_runtime:registries: key 'r.example/../../etc' is not a registry host",
    ),
    "image_url_not_http": (
        _pillar(container_runtime__images=[{"name": "x/pause:1", "url": "file:///etc/shadow", "sha256": "a" * 64}]),
        "k8s:container_runtime:images:0:url: 'file:///etc/shadow' is not an http(s) URL",
    ),
    "mirror_with_a_line_break": (
        _pillar(artifacts__mirror="http://mirror.example\nx"),
        "k8s:artifacts:mirror: 'http://mirror.example\\nx' contains a control character",
    ),
    "pin_url_not_http": (
        _pillar(artifacts__pins={"runc": {"1.4.3": {"amd64": {"url": "file:///bin/sh"}}}}),
        "k8s:artifacts:pins:runc:1.4.3:amd64:url: 'file:///bin/sh' is not an http(s) URL",
    ),
    "boolean_as_a_string": (_pillar(manage_services="no"), "k8s:manage_services: 'no' is not true or false"),
    "audit_log_path_relative": (
        _pillar(apiserver__audit_log_path="audit.log"),
        "k8s:apiserver:audit_log_path: 'audit.log' is not an absolute path",
    ),
    "taint_with_a_line_break": (_pillar(master_taint="node-role\nx"), "k8s:master_taint: 'node-role\\nx'"),
    "package_name_with_an_option": (
        _pillar(node_packages=["iptables", "-o Dpkg::x"]),
        "k8s:node_packages: '-o Dpkg::x'",
    ),
}


ALLOWED = {case for case, (_, message) in BROKEN.items() if message is None}
for _case in ALLOWED:
    BROKEN.pop(_case)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_configuration_is_refused_naming_the_key(make_settings, k8s_module, case):
    pillar, message = BROKEN[case]
    errors = k8s_module.check(make_settings(pillar))["errors"]
    assert any(message in e for e in errors), errors
    assert all("\n" not in e for e in errors), errors  # a message never spans lines
    with pytest.raises(CommandExecutionError, match="nothing was changed"):
        make_settings(pillar, validate=True)


def test_a_flag_value_with_spaces_is_allowed_and_stays_one_argument(make_settings, k8s_module):
    config = make_settings(_pillar(kubelet__extra_flags=["--v=2 --anonymous-auth"]))
    assert k8s_module.check(config)["errors"] == []


def test_every_default_has_a_type_and_every_type_a_default():
    from kubesalt import schema

    defaults = yaml.safe_load((REPO / "formulas/k8s/defaults.yaml").read_text())["k8s"]
    assert schema.errors(defaults) == []
    assert set(schema.SCHEMA.fields) == set(defaults)
    for key, kind in schema.SCHEMA.fields.items():
        if isinstance(kind, schema.Struct) and key != "nodes":
            assert set(kind.fields) == set(defaults[key]), key


def test_even_etcd_membership_is_a_warning_not_an_error(make_settings, k8s_module):
    pillar = _nodes(
        m1={"roles": ["master", "etcd"], "ip": "10.240.0.11"}, m2={"roles": ["master", "etcd"], "ip": "10.240.0.12"}
    )
    result = k8s_module.check(make_settings(pillar))
    assert result["errors"] == []
    assert any("2 etcd members" in w and "odd" in w for w in result["warnings"])


def test_every_problem_is_reported_at_once(make_settings, k8s_module):
    pillar = _pillar(networks__pod_cidr="10.32.0.0/16", versions__kubernetes="1.x", pki__ca_days=1, arch="mips")
    errors = k8s_module.check(make_settings(pillar))["errors"]
    for key in ("k8s:networks:pod_cidr", "k8s:versions:kubernetes", "k8s:pki:ca_days", "k8s:arch"):
        assert any(e.startswith(key) for e in errors), (key, errors)
