"""The etcd member's spec (k8s_conf.etcd, the same path as every other component) and the client's connection
defaults (k8s_etcd), on settings built by the real k8s.settings(); the rendered flags are run by the real etcd
binary."""

import pytest
from salt.exceptions import SaltInvocationError

from tests.support import etcd_cluster
from tests.support.loader import load

THREE_MEMBERS = {
    "etcd01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"},
    "etcd02": {"roles": ["etcd"], "ip": "10.240.0.12"},
    "etcd03": {"roles": ["etcd"], "ip": "10.240.0.13"},
    "worker01": {"roles": ["worker"], "ip": "10.240.0.21"},
}


@pytest.fixture(scope="module")
def etcd():
    return load("k8s_etcd")


@pytest.fixture(scope="module")
def conf():
    return load("k8s_conf")


def test_etcd_spec_describes_a_mutual_tls_member_of_every_etcd_node(conf, make_settings):
    config = make_settings({"nodes": THREE_MEMBERS, "cluster_name": "prod"})
    spec = conf.etcd(config, "etcd02")
    flags = spec["flags"]
    assert spec["unit"] == "etcd" and spec["exec"] == "/usr/local/bin/etcd"
    assert spec["certificates"] == ["etcd-server", "etcd-peer"]
    assert flags[:7] == [
        "--name=etcd02",
        "--data-dir=/var/lib/etcd",
        "--listen-client-urls=https://10.240.0.12:2379,https://127.0.0.1:2379",
        "--advertise-client-urls=https://10.240.0.12:2379",
        "--listen-peer-urls=https://10.240.0.12:2380",
        "--initial-advertise-peer-urls=https://10.240.0.12:2380",
        "--initial-cluster-token=prod",
    ]
    # the first-start settings are not flags: the unit reads them from a file written only for a first start
    assert not any(f.startswith(("--initial-cluster=", "--initial-cluster-state")) for f in flags)
    assert spec["files"] == {} and spec["service"]["EnvironmentFile"] == "-/etc/kubernetes/etcd-first-start.env"
    assert "--client-cert-auth" in flags and "--peer-client-cert-auth" in flags
    root = make_settings({"nodes": THREE_MEMBERS, "cluster_name": "prod", "etcd": {"user": ""}})
    root_flags = conf.etcd(root, "etcd02")["flags"]
    assert "--trusted-ca-file=/etc/kubernetes/pki/etcd-ca.crt" in root_flags
    assert "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd-ca.crt" in root_flags
    assert "--cert-file=/etc/kubernetes/pki/etcd-server.crt" in root_flags
    assert "--peer-key-file=/etc/kubernetes/pki/etcd-peer.key" in root_flags
    assert "ExecStartPre=/bin/chmod 0700 /var/lib/etcd" in conf.unit(conf.etcd(root, "etcd02"))
    assert "User=" not in conf.unit(conf.etcd(root, "etcd02"))
    unit = conf.unit(spec)
    assert "Type=notify" in unit and "User=etcd\nGroup=etcd\n" in unit
    assert "ExecStartPre=+/bin/chown -R etcd:etcd /var/lib/etcd\nExecStartPre=+/bin/chmod 0700 /var/lib/etcd\n" in unit


def test_etcd_as_its_user_reads_each_tls_file_as_a_credential_of_root_s_file(conf, make_settings):
    """Every TLS file the member opens is a LoadCredential= of the same file the root-run member would open."""
    default = conf.etcd(make_settings({"nodes": THREE_MEMBERS}), "etcd02")
    root = conf.etcd(make_settings({"nodes": THREE_MEMBERS, "etcd": {"user": ""}}), "etcd02")
    loaded = dict(c.split(":", 1) for c in default["service"]["LoadCredential"])
    assert sorted(loaded) == ["etcd-ca.crt", "etcd-peer.crt", "etcd-peer.key", "etcd-server.crt", "etcd-server.key"]
    changed = [(a, b) for a, b in zip(default["flags"], root["flags"], strict=True) if a != b]
    assert len(changed) == 6
    for as_user, as_root in changed:
        flag, credential = as_user.split("=", 1)
        assert credential.startswith("/run/credentials/etcd.service/")
        assert as_root == f"{flag}={loaded[credential.rsplit('/', 1)[1]]}"
    assert (
        conf.etcd(make_settings({"nodes": THREE_MEMBERS, "etcd": {"install": "package"}}), "etcd02")["exec"]
        == "/usr/bin/etcd"
    )


def test_etcd_urls_put_an_ipv6_member_address_in_brackets(conf, etcd, make_settings):
    nodes = {
        "m1": {"roles": ["master", "etcd"], "ip": "fd00:10::11"},
        "m2": {"roles": ["master", "etcd"], "ip": "fd00:10::12"},
    }
    config = make_settings({"nodes": nodes, "networks": {"node_cidr": "fd00:10::/64"}}, minion_id="m1")
    flags = conf.etcd(config, "m2")["flags"]
    assert "--advertise-client-urls=https://[fd00:10::12]:2379" in flags
    first = etcd.decide_initial_cluster(
        "m2",
        config["cluster"]["etcd_peer_url"] or "https://[fd00:10::12]:2380",
        {
            "m1": "https://[fd00:10::11]:2380",
            "m2": "https://[fd00:10::12]:2380",
        },
    )
    written = etcd.first_start_env(first)
    assert "ETCD_INITIAL_CLUSTER=m1=https://[fd00:10::11]:2380,m2=https://[fd00:10::12]:2380\n" in written
    assert etcd.connection_defaults(config)["endpoints"] == ["https://[fd00:10::11]:2379", "https://[fd00:10::12]:2379"]
    # where m1 asks about itself (its first start, its promotion): the others, never its own endpoint
    assert config["cluster"]["etcd_other_client_urls"] == ["https://[fd00:10::12]:2379"]
    apiserver = conf.apiserver(config, "m1")["flags"]
    assert "--etcd-servers=https://[fd00:10::11]:2379,https://[fd00:10::12]:2379" in apiserver


def test_connection_defaults_use_the_pki_layout_client_of_the_node_role(etcd, make_settings):
    master = etcd.connection_defaults(make_settings({"nodes": THREE_MEMBERS}, minion_id="etcd01"))
    member = etcd.connection_defaults(make_settings({"nodes": THREE_MEMBERS}, minion_id="etcd02"))
    assert master["endpoints"] == ["https://10.240.0.11:2379", "https://10.240.0.12:2379", "https://10.240.0.13:2379"]
    assert master["ca"] == "/etc/kubernetes/pki/etcd-ca.crt"
    assert master["cert"] == "/etc/kubernetes/pki/apiserver-etcd-client.crt"
    assert member["key"] == "/etc/kubernetes/pki/etcd-healthcheck-client.key"


def test_etcd_spec_refuses_a_node_without_the_etcd_role(conf, make_settings):
    config = make_settings({"nodes": THREE_MEMBERS})
    with pytest.raises(SaltInvocationError, match=r"k8s:nodes:worker01:roles: .*etcd01, etcd02, etcd03"):
        conf.etcd(config, "worker01")
    with pytest.raises(SaltInvocationError, match="k8s:nodes:ghost: 'ghost' is not in the inventory"):
        conf.etcd(config, "ghost")


def test_this_etcd_binary_runs_a_member_from_the_rendered_flags(etcd, conf, make_settings, tmp_path):
    client_port, peer_port = etcd_cluster.free_ports(2)
    config = make_settings(
        {
            "nodes": {"solo": {"roles": ["master", "etcd"], "ip": "127.0.0.1"}},
            "paths": {"etcd_data_dir": str(tmp_path / "data"), "pki_dir": str(tmp_path / "etc")},
            # No systemd here to hand over credentials: the member as root reads the files themselves.
            "etcd": {"client_port": client_port, "peer_port": peer_port, "user": ""},
        },
        minion_id="solo",
    )
    etc = tmp_path / "etc"
    etc.mkdir()
    pki = etcd_cluster.Pki(tmp_path / "ca")
    (etc / "etcd-ca.crt").write_text(pki.cert_pem)
    for kind in ("server", "peer"):  # named as k8s_pki.layout names them
        pki.issue(f"etcd-{kind}", "solo", usages=("server", "client"), ips=("127.0.0.1",), dns=("solo",), directory=etc)
    client = pki.issue("client", "kubesalt-test-client")
    conn = {"endpoints": [f"https://127.0.0.1:{client_port}"], "ca": pki.ca_file, "cert": client[0], "key": client[1]}

    first_start = etcd.initial_cluster(config)  # nobody else to ask: the first bootstrap
    assert first_start == {
        "state": "new",
        "initial_cluster": {"solo": f"https://127.0.0.1:{peer_port}"},
        "join": False,
        "promote_first": [],
    }
    spec = conf.etcd(config, "solo")
    assert spec["service"]["EnvironmentFile"] == "-" + conf.etcd_first_start_file(config)
    process = etcd_cluster.start_etcd(spec["flags"], tmp_path / "etcd.log", etcd.first_start_env(first_start))
    try:
        etcd_cluster.wait_healthy(
            conn["endpoints"][0], conn["ca"], conn["cert"], conn["key"], process=process, log=tmp_path / "etcd.log"
        )
        assert etcd.endpoint_health(**conn) == {conn["endpoints"][0]: {"healthy": True, "error": ""}}
        assert [m["name"] for m in etcd.member_list(**conn)] == ["solo"]
        assert etcd.holds_member(str(tmp_path / "data")) and etcd.initial_cluster(config) is None
    finally:
        etcd_cluster.stop_process(process)
