"""k8s_conf: every component's configuration built as data from the real defaults/profiles/catalogue, checked with
real parsers (tomllib for containerd's config.toml, YAML/JSON for kubeconfigs and Kubernetes config objects).
The real daemons parse these files in tests/kube and in the lab."""

import json

import pytest
import tomllib
import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support.loader import ROOT, load
from tests.unit.conftest import CATALOGUE, INVENTORY

THREE_MASTERS = {
    "master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"},
    "master02": {"roles": ["master", "etcd"], "ip": "10.240.0.12"},
    "master03": {"roles": ["master", "etcd"], "ip": "10.240.0.13"},
    "worker01": {"roles": ["worker"], "ip": "10.240.0.21"},
}


@pytest.fixture(scope="module")
def conf():
    return load("k8s_conf")


def settings(make_settings, minion_id="worker01", nodes=None, **pillar):
    pillar = {"nodes": nodes or INVENTORY, **pillar}
    return make_settings(pillar, minion_id=minion_id, validate=True)


def file_of(spec, suffix):
    matches = [path for path in spec["files"] if path.endswith(suffix)]
    assert len(matches) == 1, (suffix, list(spec["files"]))
    return spec["files"][matches[0]]


def flag_map(flags):
    return dict(flag[2:].split("=", 1) for flag in flags)


# -- containerd -------------------------------------------------------------------------------------------------------
# Every containerd of the catalogue: config version 2 for 1.x, 3 for 2.x.
@pytest.mark.parametrize(
    "version,schema", [(v, 3 if v.startswith("2.") else 2) for v in CATALOGUE["containerd"]["versions"]]
)
def test_containerd_config_parses_as_toml_with_systemd_cgroups_and_sandbox_image(conf, make_settings, version, schema):
    cfg = settings(make_settings, versions={"containerd": version})
    spec = conf.containerd(cfg, "worker01")
    parsed = tomllib.loads(file_of(spec, "/containerd/config.toml")["contents"])
    assert parsed["version"] == schema
    assert parsed == conf.containerd_config(cfg)
    text = json.dumps(parsed)
    assert '"SystemdCgroup": true' in text
    assert cfg["container_runtime"]["sandbox_image"] in text
    assert "/usr/local/bin/runc" in text


def test_containerd_config_pillar_overrides_are_merged(conf, make_settings):
    cfg = settings(
        make_settings,
        versions={"containerd": "1.7.32"},
        container_runtime={
            "config": {"plugins": {"io.containerd.grpc.v1.cri": {"containerd": {"snapshotter": "native"}}}}
        },
    )
    parsed = tomllib.loads(conf.to_toml(conf.containerd_config(cfg)))
    cri = parsed["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["snapshotter"] == "native"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True


def test_registry_mirrors_and_private_ca_are_written_per_registry(conf, make_settings):
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    cfg = settings(
        make_settings,
        container_runtime={
            "registries": {
                "docker.io": {"mirrors": ["https://mirror.example:5000"]},
                "registry.example:5000": {"ca": pem},
            }
        },
    )
    files = conf.registry_hosts(cfg)
    hub = tomllib.loads(files["/etc/containerd/certs.d/docker.io/hosts.toml"]["contents"])
    assert hub["server"] == "https://registry-1.docker.io"
    assert hub["host"]["https://mirror.example:5000"]["capabilities"] == ["pull", "resolve"]
    private = tomllib.loads(files["/etc/containerd/certs.d/registry.example:5000/hosts.toml"]["contents"])
    assert private == {"server": "https://registry.example:5000"}
    assert files["/etc/containerd/certs.d/registry.example:5000/ca.crt"]["contents"] == pem + "\n"


def test_package_install_uses_the_distribution_paths(conf, make_settings):
    cfg = settings(make_settings, container_runtime={"install": "package"})
    spec = conf.containerd(cfg, "worker01")
    assert spec["exec"] == "/usr/bin/containerd"
    cri = conf.containerd_config(cfg)["plugins"]
    assert "/usr/bin/runc" in json.dumps(cri) and "/usr/lib/cni" in json.dumps(cri)


def test_to_toml_refuses_values_it_cannot_represent(conf):
    with pytest.raises(SaltInvocationError, match="'bad'"):
        conf.to_toml({"bad": object()})


# -- kubelet -----------------------------------------------------------------------------------------------------------
def test_kubelet_config_is_locked_down(conf, make_settings):
    cfg = settings(make_settings)
    obj = yaml.safe_load(file_of(conf.kubelet(cfg, "worker01"), "/kubelet.yaml")["contents"])
    assert obj["kind"] == "KubeletConfiguration" and obj["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert obj["authentication"]["anonymous"]["enabled"] is False
    assert obj["authentication"]["webhook"]["enabled"] is True
    assert obj["authorization"]["mode"] == "Webhook"
    assert obj["authentication"]["x509"]["clientCAFile"] == "/etc/kubernetes/pki/kubernetes-ca.crt"
    assert obj["readOnlyPort"] == 0
    assert obj["cgroupDriver"] == "systemd"
    assert obj["clusterDNS"] == ["10.32.0.10"] and obj["clusterDomain"] == "cluster.local"
    assert obj["tlsCertFile"] == "/etc/kubernetes/pki/kubelet.crt"


def test_kubelet_runtime_endpoint_is_a_field_on_1_34_and_flags_on_1_20(conf, make_settings):
    new = conf.kubelet(settings(make_settings), "worker01")
    assert (
        yaml.safe_load(file_of(new, "/kubelet.yaml")["contents"])["containerRuntimeEndpoint"]
        == "unix:///run/containerd/containerd.sock"
    )
    assert not [f for f in new["flags"] if f.startswith("--container-runtime")]
    old = conf.kubelet(
        settings(
            make_settings,
            versions={"kubernetes": "1.20.2"},
            artifacts={
                "checksum_urls": dict.fromkeys(
                    ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy"),
                    "https://dl.k8s.io/x.sha256",
                )
            },
        ),
        "worker01",
    )
    assert "containerRuntimeEndpoint" not in yaml.safe_load(file_of(old, "/kubelet.yaml")["contents"])
    # seccompDefault: on from 1.25, an unknown field before
    assert yaml.safe_load(file_of(new, "/kubelet.yaml")["contents"])["seccompDefault"] is True
    assert "seccompDefault" not in yaml.safe_load(file_of(old, "/kubelet.yaml")["contents"])
    assert "--container-runtime=remote" in old["flags"]
    assert "--container-runtime-endpoint=unix:///run/containerd/containerd.sock" in old["flags"]


def test_kubelet_node_name_and_ip_come_from_the_inventory(conf, make_settings):
    flags = flag_map(conf.kubelet(settings(make_settings), "worker02")["flags"])
    assert flags["hostname-override"] == "worker02"
    assert flags["node-ip"] == "10.240.0.22"


def test_kubelet_pillar_config_is_merged_and_swap_setting_honoured(conf, make_settings):
    cfg = settings(
        make_settings, kubelet={"fail_swap_on": False, "config": {"evictionHard": {"memory.available": "200Mi"}}}
    )
    obj = conf.kubelet_config(cfg, "worker01")
    assert obj["failSwapOn"] is False and obj["evictionHard"] == {"memory.available": "200Mi"}


# -- kubeconfigs -------------------------------------------------------------------------------------------------------
def _server(spec, name):
    return yaml.safe_load(file_of(spec, name)["contents"])["clusters"][0]["cluster"]["server"]


def test_every_node_daemon_reaches_the_api_through_its_node_local_balancer(conf, make_settings):
    cfg = settings(make_settings, nodes=THREE_MASTERS)
    for node in ("worker01", "master02"):
        assert _server(conf.kubelet(cfg, node), "/kubelet.conf") == "https://127.0.0.1:6444"
        assert _server(conf.kube_proxy(cfg, node), "/kube-proxy.conf") == "https://127.0.0.1:6444"
    assert _server(conf.controller_manager(cfg, "master02"), "/controller-manager.conf") == "https://127.0.0.1:6444"
    assert _server(conf.scheduler(cfg, "master03"), "/scheduler.conf") == "https://127.0.0.1:6444"
    # kubesalt's own calls: a worker's through its balancer, a master's to its own API server (whose readiness
    # they check)
    assert cfg["cluster"]["api_url"] == "https://127.0.0.1:6444"
    assert settings(make_settings, "master02", THREE_MASTERS)["cluster"]["api_url"] == "https://127.0.0.1:6443"
    assert _server({"files": conf.admin(cfg, "master01")}, "/admin.conf") == "https://127.0.0.1:6444"
    lb = settings(make_settings, nodes=THREE_MASTERS, apiserver={"endpoint": "https://k8s-api.example:6443"})
    assert _server({"files": conf.admin(lb, "master01")}, "/admin.conf") == "https://k8s-api.example:6443"  # for people
    assert _server(conf.kubelet(lb, "worker01"), "/kubelet.conf") == "https://127.0.0.1:6444"


def test_without_the_balancer_workers_reach_the_first_master_or_the_endpoint_and_masters_their_own(conf, make_settings):
    cfg = settings(make_settings, nodes=THREE_MASTERS, api_balancer={"enabled": False})
    assert _server(conf.kubelet(cfg, "worker01"), "/kubelet.conf") == "https://10.240.0.11:6443"
    assert _server(conf.kubelet(cfg, "master02"), "/kubelet.conf") == "https://127.0.0.1:6443"
    assert _server(conf.scheduler(cfg, "master02"), "/scheduler.conf") == "https://127.0.0.1:6443"
    lb = settings(
        make_settings,
        nodes=THREE_MASTERS,
        api_balancer={"enabled": False},
        apiserver={"endpoint": "https://k8s-api.example:6443"},
    )
    assert _server(conf.kube_proxy(lb, "worker01"), "/kube-proxy.conf") == "https://k8s-api.example:6443"


def test_kubeconfigs_reference_files_and_are_private(conf, make_settings):
    spec = conf.kubelet(settings(make_settings), "worker01")
    entry = file_of(spec, "/kubelet.conf")
    assert entry["mode"] == "0600"
    user = yaml.safe_load(entry["contents"])["users"][0]["user"]
    assert user == {
        "client-certificate": "/etc/kubernetes/pki/kubelet.crt",
        "client-key": "/etc/kubernetes/pki/kubelet.key",
    }


def test_admin_kubeconfig_only_on_the_ca_minion(conf, make_settings):
    cfg = settings(make_settings, nodes=THREE_MASTERS, admin={"kubeconfig_paths": ["/root/.kube/config"]})
    files = conf.admin(cfg, "master01")
    assert sorted(files) == ["/etc/kubernetes/admin.conf", "/etc/kubernetes/super-admin.conf", "/root/.kube/config"]
    assert all(f["mode"] == "0600" for f in files.values())
    user = yaml.safe_load(files["/root/.kube/config"]["contents"])["users"][0]
    assert user["name"] == "kubernetes-admin"
    breakglass = yaml.safe_load(files["/etc/kubernetes/super-admin.conf"]["contents"])["users"][0]
    assert breakglass["name"] == "kubernetes-super-admin" and breakglass["user"]["client-key"].endswith(
        "/super-admin.key"
    )
    old = settings(make_settings, nodes=THREE_MASTERS, pki={"super_admin": False})  # the pre-1.29 profile
    assert sorted(conf.admin(old, "master01")) == ["/etc/kubernetes/admin.conf"]
    assert conf.admin(cfg, "master02") == {} and conf.admin(cfg, "worker01") == {}


# -- control plane -----------------------------------------------------------------------------------------------------
def test_apiserver_flags_secure_defaults(conf, make_settings):
    flags = flag_map(conf.apiserver(settings(make_settings, nodes=THREE_MASTERS), "master02")["flags"])
    assert flags["authorization-mode"] == "Node,RBAC"
    assert flags["enable-admission-plugins"] == "NodeRestriction"
    assert flags["anonymous-auth"] == "false"
    assert flags["advertise-address"] == "10.240.0.12"
    assert flags["etcd-servers"] == ",".join(f"https://10.240.0.1{i}:2379" for i in (1, 2, 3))
    assert flags["etcd-certfile"].endswith("/apiserver-etcd-client.crt")
    assert flags["encryption-provider-config"].endswith("/encryption-config.yaml")
    assert flags["kubelet-certificate-authority"].endswith("/kubernetes-ca.crt")
    assert flags["service-account-signing-key-file"].endswith("/service-account.key")
    assert flags["service-account-key-file"].endswith("/service-account.pub")
    assert flags["service-account-extend-token-expiration"] == "false"
    assert flags["service-cluster-ip-range"] == "10.32.0.0/24"
    assert flags["service-node-port-range"] == "30000-32767"


def test_apiserver_audits_by_default_and_not_when_the_rules_are_emptied(conf, make_settings):
    flags = flag_map(conf.apiserver(settings(make_settings), "master01")["flags"])
    assert (
        flags["audit-log-maxage"] == "30"
        and flags["audit-log-maxbackup"] == "10"
        and flags["audit-log-maxsize"] == "100"
    )
    off = settings(make_settings, apiserver={"audit_rules": []})
    assert "audit-policy-file" not in flag_map(conf.apiserver(off, "master01")["flags"])
    cfg = settings(make_settings, apiserver={"audit_rules": [{"level": "Metadata"}]})
    spec = conf.apiserver(cfg, "master01")
    flags = flag_map(spec["flags"])
    policy = yaml.safe_load(spec["files"][flags["audit-policy-file"]]["contents"])
    assert policy == {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]}
    assert flags["audit-log-path"] == "/var/log/kubernetes/audit.log"


def test_version_flags_differ_between_releases(conf, make_settings):
    old = settings(
        make_settings,
        versions={"kubernetes": "1.20.2"},
        artifacts={
            "checksum_urls": dict.fromkeys(
                ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy"),
                "https://x/y.sha256",
            )
        },
    )
    new = settings(make_settings)
    assert "--insecure-port=0" in conf.apiserver(old, "master01")["flags"]
    assert "--insecure-port=0" not in conf.apiserver(new, "master01")["flags"]
    assert "--port=0" in conf.scheduler(old, "master01")["flags"]
    sched_old = yaml.safe_load(file_of(conf.scheduler(old, "master01"), "/kube-scheduler.yaml")["contents"])
    sched_new = yaml.safe_load(file_of(conf.scheduler(new, "master01"), "/kube-scheduler.yaml")["contents"])
    assert sched_old["apiVersion"] == "kubescheduler.config.k8s.io/v1beta1"
    assert sched_new["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert sched_new["leaderElection"] == {"leaderElect": True}


def test_extra_flags_are_appended(conf, make_settings):
    cfg = settings(make_settings, apiserver={"extra_flags": ["--v=2"]})
    assert conf.apiserver(cfg, "master01")["flags"][-1] == "--v=2"


def test_only_the_ca_minion_signs_for_the_certificates_api(conf, make_settings):
    cfg = settings(make_settings, nodes=THREE_MASTERS)
    ca = flag_map(conf.controller_manager(cfg, "master01")["flags"])
    assert ca["cluster-signing-key-file"] == "/etc/kubernetes/pki/ca/kubernetes-ca.key"
    assert "controllers" not in ca
    other = flag_map(conf.controller_manager(cfg, "master02")["flags"])
    assert "cluster-signing-key-file" not in other
    assert other["controllers"] == "*,-csrsigning"
    assert other["service-account-private-key-file"].endswith("/service-account.key")
    assert other["leader-elect"] == "true" and other["use-service-account-credentials"] == "true"


def test_node_cidr_allocation_is_opt_in(conf, make_settings):
    flags = flag_map(conf.controller_manager(settings(make_settings), "master01")["flags"])
    assert flags["allocate-node-cidrs"] == "false" and "node-cidr-mask-size" not in flags
    cfg = settings(make_settings, controller_manager={"allocate_node_cidrs": True})
    flags = flag_map(conf.controller_manager(cfg, "master01")["flags"])
    assert flags["allocate-node-cidrs"] == "true" and flags["node-cidr-mask-size"] == "24"
    assert flags["cluster-cidr"] == "10.200.0.0/16"


def test_control_plane_is_refused_for_a_worker(conf, make_settings):
    with pytest.raises(SaltInvocationError, match="worker01.*no master role"):
        conf.apiserver(settings(make_settings), "worker01")
    with pytest.raises(SaltInvocationError, match="nobody.*not in the inventory"):
        conf.kubelet(settings(make_settings), "nobody")


# -- kube-proxy and network --------------------------------------------------------------------------------------------
def test_kube_proxy_config(conf, make_settings):
    cfg = settings(make_settings, kube_proxy={"mode": "ipvs"})
    obj = yaml.safe_load(file_of(conf.kube_proxy(cfg, "worker01"), "/kube-proxy.yaml")["contents"])
    assert obj["kind"] == "KubeProxyConfiguration" and obj["mode"] == "ipvs"
    assert obj["clusterCIDR"] == "10.200.0.0/16" and obj["hostnameOverride"] == "worker01"
    assert obj["clientConnection"]["kubeconfig"] == "/etc/kubernetes/kube-proxy.conf"
    assert obj["metricsBindAddress"] == "127.0.0.1:10249"


def test_routes_mode_bridges_the_node_subnet_and_routes_to_every_other_node(conf, make_settings):
    cfg = settings(make_settings)
    spec = conf.network(cfg, "worker01")
    conflist = json.loads(file_of(spec, "/10-kubesalt.conflist")["contents"])
    bridge = conflist["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["ipam"]["ranges"] == [[{"subnet": "10.200.21.0/24"}]]
    assert conflist["plugins"][1]["type"] == "portmap"
    assert spec["commands"] == [
        ["/sbin/ip", "route", "replace", "10.200.11.0/24", "via", "10.240.0.11"],
        ["/sbin/ip", "route", "replace", "10.200.22.0/24", "via", "10.240.0.22"],
    ]
    assert spec["service"]["Type"] == "oneshot"


def test_flannel_mode_uses_the_kube_subnet_manager_with_its_own_api_credential(conf, make_settings):
    cfg = settings(
        make_settings,
        network={"mode": "flannel"},
        artifacts={"pins": {"flannel-cni-plugin": {"1.7.1": {"amd64": {"sha256": "a" * 64}}}}},
    )
    spec = conf.network(cfg, "worker02")
    flags = flag_map(spec["flags"])
    assert flags["kube-subnet-mgr"] == "true" and not any(f.startswith("etcd") for f in flags)
    kubeconfig = yaml.safe_load(file_of(spec, "/flannel.conf")["contents"])
    assert kubeconfig["users"][0]["user"]["client-certificate"].endswith("/flannel.crt")
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6444"  # its node-local balancer
    assert json.loads(file_of(spec, "/flannel-net-conf.json")["contents"]) == {
        "Network": "10.200.0.0/16",
        "Backend": {"Type": "vxlan"},
    }
    assert flags["iface"] == flags["public-ip"] == "10.240.0.22"
    assert spec["certificates"] == ["flannel"] and spec["service"]["Environment"] == "NODE_NAME=worker02"
    manager = flag_map(conf.controller_manager(cfg, "master01")["flags"])
    assert manager["allocate-node-cidrs"] == "true" and manager["node-cidr-mask-size"] == "24"
    rbac = [o for o in conf.cluster_objects(cfg) if o["metadata"]["name"] == "kubesalt:flannel"]
    assert [o["kind"] for o in rbac] == ["ClusterRole", "ClusterRoleBinding"]
    conflist = json.loads(file_of(spec, "/10-flannel.conflist")["contents"])
    assert [p["type"] for p in conflist["plugins"]] == ["flannel", "portmap"]
    assert "containerd.service" in spec["before"]


# -- units -------------------------------------------------------------------------------------------------------------
def test_unit_exec_start_carries_every_flag(conf, make_settings):
    spec = conf.kubelet(settings(make_settings), "worker01")
    text = conf.unit(spec)
    exec_start = text.split("ExecStart=", 1)[1].split("\nRestart=")[0]
    assert [line.strip(" \\") for line in exec_start.splitlines()] == [spec["exec"]] + spec["flags"]
    assert "Requires=containerd.service" in text and "WantedBy=multi-user.target" in text


def test_the_group_bound_for_the_kubelet_client_is_the_one_in_its_certificate(conf, make_settings):
    config = make_settings()
    binding = conf.cluster_objects(config)[0]
    client = load("k8s_pki").entitlements(config, "master01")["apiserver-kubelet-client"]
    assert [s["name"] for s in binding["subjects"]] == client["o"]
    assert binding["roleRef"]["name"] == "system:kubelet-api-admin"


def test_coredns_objects_come_from_the_addon_data_with_the_settings_filled_in(conf, make_settings):
    objects = yaml.safe_load((ROOT / "formulas/k8s/addons/coredns.yaml").read_text())
    config = make_settings(
        {
            "nodes": make_settings()["nodes"],
            "cluster_domain": "k8s.example",
            "networks": {"cluster_dns_ip": "10.32.0.53"},
            "addons": {"coredns": {"image": "example.org/coredns:1", "replicas": 3}},
        }
    )
    built = {o["kind"]: o for o in conf.coredns_objects(config, objects)}
    assert list(built) == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service"]
    assert all(o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubesalt" for o in built.values())
    assert "kubernetes k8s.example in-addr.arpa ip6.arpa {" in built["ConfigMap"]["data"]["Corefile"]
    deployment = built["Deployment"]["spec"]
    assert deployment["replicas"] == 3
    assert deployment["template"]["spec"]["containers"][0]["image"] == "example.org/coredns:1"
    assert {"key": config["master_taint"], "operator": "Exists", "effect": "NoSchedule"} in deployment["template"][
        "spec"
    ]["tolerations"]
    assert built["Service"]["spec"]["clusterIP"] == "10.32.0.53"
    assert "CLUSTER_DOMAIN" in objects[3]["data"]["Corefile"]  # the data itself is left as it was
    disabled = make_settings({"nodes": make_settings()["nodes"], "addons": {"coredns": {"enabled": False}}})
    assert conf.coredns_objects(disabled, objects) == []


def test_masters_register_tainted_and_workers_untainted(conf, make_settings):
    cfg = settings(make_settings, nodes=THREE_MASTERS)
    master = yaml.safe_load(file_of(conf.kubelet(cfg, "master02"), "/kubelet.yaml")["contents"])
    assert master["registerWithTaints"] == [{"key": cfg["master_taint"], "effect": "NoSchedule"}]
    worker = yaml.safe_load(file_of(conf.kubelet(cfg, "worker01"), "/kubelet.yaml")["contents"])
    assert "registerWithTaints" not in worker


# -- node-local API balancer -------------------------------------------------------------------------------------------
def test_the_api_balancer_checks_and_forwards_to_every_master(conf, make_settings):
    cfg = settings(make_settings, nodes=THREE_MASTERS)
    spec = conf.api_balancer(cfg, "worker01")
    text = file_of(spec, "/api-balancer.cfg")["contents"]
    assert "    bind 127.0.0.1:6444\n" in text
    for n in (1, 2, 3):
        assert f"    server master0{n} 10.240.0.1{n}:6443 check-sni master0{n} verifyhost master0{n}\n" in text
    assert "http-check send meth GET uri /readyz" in text and "on-marked-down shutdown-sessions" in text
    assert "ca-file /etc/kubernetes/pki/kubernetes-ca.crt crt /etc/kubernetes/pki/kube-proxy.crt" in text
    assert spec["certificates"] == ["kube-proxy"] and spec["reload"] is True
    unit = conf.unit(spec)
    assert "ExecReload=/usr/sbin/haproxy -Ws -f /etc/kubernetes/api-balancer.cfg -c -q\n" in unit
    assert "ExecReload=/bin/kill -USR2 $MAINPID\n" in unit and "Type=notify" in unit


def test_the_api_balancer_brackets_nothing_and_marks_ipv6_backends(conf, make_settings):
    nodes = {
        "m1": {"roles": ["master", "etcd"], "ip": "fd00:10::11"},
        "w1": {"roles": ["worker"], "ip": "fd00:10::21"},
    }
    cfg = make_settings({"nodes": nodes, "networks": {"node_cidr": "fd00:10::/64"}}, minion_id="w1")
    text = conf.api_balancer_config(cfg, "w1")
    assert "    server m1 ipv6@fd00:10::11:6443 check-sni m1 verifyhost m1\n" in text


def test_a_value_that_is_not_one_haproxy_word_is_never_written(conf, make_settings):
    cfg = settings(make_settings, nodes=THREE_MASTERS)
    cfg["paths"]["pki_dir"] = "/etc/kubernetes/pki #comment"
    with pytest.raises(SaltInvocationError, match="cannot be written into the haproxy configuration"):
        conf.api_balancer_config(cfg, "worker01")


def test_the_balancer_port_may_not_clash_with_another_service(make_settings):
    with pytest.raises(CommandExecutionError, match=r"k8s:api_balancer:port: 2379 is already the port of"):
        settings(make_settings, api_balancer={"port": 2379})
    settings(make_settings, api_balancer={"port": 2379, "enabled": False})


def test_a_master_being_removed_is_left_out_of_every_balancer(conf, make_settings):
    cfg = settings(make_settings, nodes=THREE_MASTERS)
    text = conf.api_balancer_config(cfg, "worker01", without=["master02"])
    assert "server master01 " in text and "server master03 " in text and "master02" not in text
