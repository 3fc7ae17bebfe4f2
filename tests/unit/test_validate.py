"""k8s.settings / k8s.check: the cluster data model and its validation, on the real defaults and catalogue."""

import copy

import pytest
import yaml
from salt.exceptions import CommandExecutionError

from tests.unit.conftest import INVENTORY, REPO


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
        "k8s:nodes:worker01:roles: unknown role 'wroker'",
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
        "'Master_01' is not a valid DNS name",
    ),
    "bad_kubernetes_version": (
        _pillar(versions__kubernetes="v1.34"),
        "k8s:versions:kubernetes: 'v1.34' is not a MAJOR.MINOR.PATCH version",
    ),
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
    "malformed_mirror_url": (_pillar(artifacts__mirror="ftp//mirror"), "k8s:artifacts:mirror: 'ftp//mirror'"),
    "unknown_network_mode": (_pillar(network__mode="weave"), "k8s:network:mode: 'weave' is not supported"),
    "etcd_prefix_without_slash": (_pillar(etcd__network_prefix="coreos.com/network"), "k8s:etcd:network_prefix"),
    "unknown_arch": (_pillar(arch="s390x"), "k8s:arch: 's390x' is not supported"),
    "relative_path": (_pillar(paths__pki_dir="etc/pki"), "k8s:paths:pki_dir: 'etc/pki' must be an absolute path"),
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
        "k8s:container_runtime:images:0:sha256: 'None' is not a sha256 digest",
    ),
    "registry_mirror_not_a_url": (
        _pillar(container_runtime__registries={"docker.io": {"mirrors": ["mirror:5000"]}}),
        "k8s:container_runtime:registries:docker.io:mirrors: 'mirror:5000'",
    ),
    "registry_ca_not_pem": (
        _pillar(container_runtime__registries={"r.example": {"ca": "not a cert"}}),
        "k8s:container_runtime:registries:r.example:ca: not a PEM certificate",
    ),
    "bad_worker_batch": (_pillar(worker_batch="all"), "k8s:worker_batch: 'all' must be a node count"),
    "relative_admin_kubeconfig_path": (
        _pillar(admin__kubeconfig_paths=["kube/config"]),
        "k8s:admin:kubeconfig_paths: 'kube/config' must be an absolute path",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_configuration_is_refused_naming_the_key(make_settings, k8s_module, case):
    pillar, message = BROKEN[case]
    errors = k8s_module.check(make_settings(pillar))["errors"]
    assert any(message in e for e in errors), errors
    with pytest.raises(CommandExecutionError, match="nothing was changed"):
        make_settings(pillar, validate=True)


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
