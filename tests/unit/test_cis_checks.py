"""k8s_cis: the CIS Kubernetes Benchmark v1.12 over settings from the real defaults/profiles/catalogue (k8s.settings)
and the real component specs (k8s_conf).

- rendered mode (what the next state run writes): a master+etcd node and a worker pass every check that applies,
  on the lab's Kubernetes 1.20 and on the default release; each class of check turns to FAIL when a setting is
  weakened (so these tests can fail);
- live mode over a node directory written from those specs and a process table of real files (``proc_root``): the
  same results, a file's mode or owner changed on disk fails, a flag on a process's command line or in etcd's
  environment fails, a component not running fails. The integration test (tests/integration/test_cis_report.py)
  does this with real salt-minions, the files the formulas wrote, a real etcd and a real kube-apiserver.
"""

import copy
import os
import pathlib
import re

import pytest
from salt.exceptions import SaltInvocationError

from kubesalt import cis_checks, pki
from tests.support.loader import load
from tests.unit.conftest import INVENTORY

KUBE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy")
OLD = {
    "versions": {"kubernetes": "1.20.2"},
    # no digest of the 1.20 binaries in the catalogue: an opted-in checksum file makes the settings valid
    "artifacts": {"checksum_urls": dict.fromkeys(KUBE, "https://dl.k8s.io/x.sha256")},
}
RELEASES = {"default": {}, "1.20": OLD}

# Every check of CIS Kubernetes Benchmark v1.12 (aquasecurity/kube-bench cfg/cis-1.12), and the Automated ones.
BENCHMARK_IDS = (
    [f"1.1.{i}" for i in range(1, 22)]
    + [f"1.2.{i}" for i in range(1, 31)]
    + [f"1.3.{i}" for i in range(1, 8)]
    + ["1.4.1", "1.4.2"]
    + [f"2.{i}" for i in range(1, 8)]
    + ["3.1.1", "3.1.2", "3.1.3", "3.2.1", "3.2.2"]
    + [f"4.1.{i}" for i in range(1, 11)]
    + [f"4.2.{i}" for i in range(1, 15)]
    + ["4.3.1"]
    + [f"5.1.{i}" for i in range(1, 14)]
    + [f"5.2.{i}" for i in range(1, 13)]
    + ["5.3.1", "5.3.2", "5.4.1", "5.4.2", "5.5.1", "5.6.1", "5.6.2", "5.6.3", "5.6.4"]
)
MANUAL_IN_SECTIONS_1_2_4 = {
    "1.1.9", "1.1.10", "1.1.20", "1.1.21", "1.2.1", "1.2.3", "1.2.9", "1.2.11", "1.2.20", "1.2.27", "1.2.28",
    "1.2.29", "1.3.1", "2.7", "4.1.3", "4.1.4", "4.1.7", "4.1.8", "4.2.4", "4.2.5", "4.2.7", "4.2.8", "4.2.9",
    "4.2.11", "4.2.12", "4.2.13", "4.2.14",
}  # fmt: skip
AUTOMATED = {i for i in BENCHMARK_IDS if i[0] in "124" and i not in MANUAL_IN_SECTIONS_1_2_4}
# What kubesalt does not satisfy on purpose, with the reason in the row (docs/cis-benchmark.md lists them).
NOT_APPLICABLE = {
    "default": {"1.2.3", "1.2.9", "1.2.11", "4.2.7", "4.2.10"},
    "1.20": {"1.2.3", "1.2.9", "1.2.11", "4.2.7", "4.2.10", "4.2.14", "5.2.1"},
}


@pytest.fixture(scope="module")
def conf():
    return load("k8s_conf")


@pytest.fixture(scope="module")
def cis():
    return load("k8s_cis")


@pytest.fixture
def settings(make_settings):
    def _make(minion_id, release="default", **pillar):
        merged = copy.deepcopy(RELEASES[release])
        for key, value in pillar.items():
            merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
        return make_settings({"nodes": copy.deepcopy(INVENTORY), **merged}, minion_id=minion_id, validate=True)

    return _make


@pytest.fixture
def rendered(cis, conf, settings):
    """rendered(minion_id, release="default", **pillar) -> {check id: row} in rendered mode."""

    def _run(minion_id, release="default", **pillar):
        out = cis._evaluate(settings(minion_id, release, **pillar), minion_id, lambda n: getattr(conf, n), live=False)
        return {row["id"]: row for row in out["checks"]}

    return _run


def failed(rows):
    return {i: r["detail"] for i, r in rows.items() if r["result"] == "FAIL"}


# -- the table ---------------------------------------------------------------------------------------------------------
def test_the_table_is_the_whole_benchmark_in_order_with_its_automated_and_manual_checks(cis):
    table = cis.checks()
    assert [c["id"] for c in table] == BENCHMARK_IDS
    assert {c["id"] for c in table if c["type"] == "Automated"} == AUTOMATED
    assert len(AUTOMATED) == 65  # 47 in section 1, 6 in section 2, 12 in section 4
    assert all(c["title"].startswith(("Ensure", "Verify", "If ", "Client", "Service", "Bootstrap", "Minimize",
                                      "Avoid", "Limit", "Prefer", "Consider", "Configure", "Create", "Apply", "The "))
               for c in table)  # fmt: skip
    assert {c["runs_on"] for c in table} == {"master", "etcd", "node", "ca"}


def test_every_row_of_the_table_resolves_to_an_evaluation(cis):
    assert len({row["id"] for row in cis.ROWS}) == len(cis.ROWS) == len(BENCHMARK_IDS)
    assert all(callable(row["run"]) for row in cis.ROWS)
    assert {row["kind"] for row in cis_checks.ROWS} == set(cis_checks.KINDS)


@pytest.mark.parametrize(
    "table,complaint",
    [
        ("9.9 A master flag kube-apiserver profiling=maybe:false\n  Title", "9.9: 'profiling=maybe:false'"),
        ("9.9 A master flag kube-apiserver profiling\n  Title", "9.9: 'profiling' is not"),
        ("9.9 A master frobnicate x\n  Title", "9.9: '9.9 A master frobnicate x'"),
        ("9.9 X master says x\n  Title", "9.9:"),
        ("9.9 A everyone says x\n  Title", "9.9:"),
        ("9.9 A master files cni mode\n  Title", "9.9: files takes"),
        ("9.9 M master admission EventRateLimit unknown-reason\n  Title", "9.9: admission takes"),
        ("9.9 M master says\n  Title", "9.9: says takes arguments"),
        ("9.9 M master says x\n9.10 M master says y\n  Title", "9.9: no title"),
        ("  Title\n9.9 M master says y\n  Title", "the title 'Title' follows no check"),
        ("9.9 M master says y", "9.9: no title"),
    ],
)
def test_a_malformed_row_is_refused_naming_its_check(table, complaint):
    with pytest.raises(ValueError, match=re.escape(complaint)):
        cis_checks.parse(table)


@pytest.mark.parametrize(
    "table,complaint",
    [
        ("9.9 A master flag kube-apiservr profiling=is:false\n  T", "9.9: kube-apiservr is not a component"),
        ("9.9 A master files unit:kubelett mode=600\n  T", "unit:kubelett: kubelett is not a component"),
        ("9.9 M ca pss strict hostPID\n  T", "9.9: strict is not a Pod Security level"),
        ("9.9 M ca check frobnicate\n  T", "frobnicate"),
        ("9.9 M ca manual frobnicate\n  T", "frobnicate"),
        ("9.9 M ca flag kubelet hostname-override=unset na=frobnicate\n  T", "frobnicate"),
        ("9.9 M ca files frobnicate mode=600\n  T", "frobnicate"),
    ],
)
def test_a_row_naming_what_k8s_cis_does_not_have_is_refused(cis, table, complaint):
    with pytest.raises((ValueError, KeyError), match=re.escape(complaint)):
        cis._check(cis_checks.parse(table)[0])


@pytest.mark.parametrize(
    "test,argument,passes,fails",
    [
        ("is", "false", [False, "false", " False "], [None, True, "0"]),
        ("unset-or", "0", [None, 0, "0"], [10255, ""]),
        ("set", None, ["x", 0], [None, "", " "]),
        ("unset", None, [None], ["", "x"]),
        ("has", "Node", ["Node,RBAC", ["RBAC", "Node"]], [None, "NodeRestriction", "node"]),
        ("set-without", "AlwaysAllow", ["Node,RBAC"], [None, "RBAC,AlwaysAllow"]),
        ("unset-or-without", "AlwaysAdmit", [None, "NodeRestriction"], ["AlwaysAdmit,X"]),
        ("at-least", "30", [30, "31"], [None, 29, "x", True]),
        ("unset-or-at-least", "0", [None, 0, "5"], [-1, "x"]),
        ("positive", None, [1, "4096"], [None, 0, -1, "x"]),
        (
            "strong-ciphers",
            "kubelet",
            ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
            [None, "", "TLS_RSA_WITH_RC4_128_SHA"],
        ),
        ("unset-or-not-zero", None, [None, "5m", "4h0m0s"], [0, "0", "0s"]),
        ("loopback-or-unset", None, [None, "127.0.0.1:10249", "[::1]:10249", "localhost:1"], ["0.0.0.0:10249"]),
    ],
)
def test_each_value_test_of_a_flag_row(test, argument, passes, fails):
    check = cis_checks.TESTS[test](argument)
    assert [v for v in passes if not check(v)] == []
    assert [v for v in fails if check(v)] == []


# -- rendered mode: the generated configuration ------------------------------------------------------------------------
@pytest.mark.parametrize("release", sorted(RELEASES))
def test_a_master_with_etcd_passes_every_check_that_applies(rendered, release):
    rows = rendered("master01", release)
    assert failed(rows) == {}
    # the CA minion, a master and an etcd member: every section, every check
    assert list(rows) == BENCHMARK_IDS
    assert {i for i, r in rows.items() if r["result"] == "N/A"} == NOT_APPLICABLE[release]
    assert all(r["result"] in ("PASS", "N/A") for i, r in rows.items() if i in AUTOMATED), rows
    assert all(r["detail"] for r in rows.values())


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_a_worker_passes_every_worker_node_check(rendered, release):
    rows = rendered("worker01", release)
    assert failed(rows) == {}
    assert list(rows) == [i for i in BENCHMARK_IDS if i.startswith("4.")]
    assert {i for i, r in rows.items() if r["result"] == "N/A"} == NOT_APPLICABLE[release] & set(rows)


def test_not_applicable_rows_give_their_reason(rendered):
    rows = rendered("master01", "1.20")
    assert "PodSecurity admission does not exist in Kubernetes 1.20.2" in rows["5.2.1"]["detail"]
    assert "minion id" in rows["4.2.7"]["detail"] and "--hostname-override=master01" in rows["4.2.7"]["detail"]
    assert "renews the kubelet's certificates" in rows["4.2.10"]["detail"]
    assert "preloaded" in rows["1.2.11"]["detail"] and "alpha" in rows["1.2.9"]["detail"]
    assert "seccomp_default" in rows["4.2.14"]["detail"]
    assert rows["5.2.2"]["result"] == "MANUAL" and "no PodSecurity" not in rows["5.2.2"]["detail"]


def test_what_a_worker_is_not_is_not_reported(rendered):
    assert not [i for i in rendered("worker01") if not i.startswith("4.")]


def test_a_master_without_etcd_reports_no_etcd_rows(cis, conf, make_settings):
    nodes = {**copy.deepcopy(INVENTORY), "etcd01": {"roles": ["etcd"], "ip": "10.240.0.31"}}
    nodes["master01"]["roles"] = ["master"]
    cfg = make_settings({"nodes": nodes}, minion_id="master01", validate=True)
    rows = {r["id"]: r for r in cis._evaluate(cfg, "master01", lambda n: getattr(conf, n), live=False)["checks"]}
    assert not {"1.1.7", "1.1.8", "1.1.11", "1.1.12", "2.1"} & set(rows) and failed(rows) == {}
    cfg = make_settings({"nodes": nodes}, minion_id="etcd01", validate=True)
    rows = {r["id"]: r for r in cis._evaluate(cfg, "etcd01", lambda n: getattr(conf, n), live=False)["checks"]}
    assert list(rows) == ["1.1.7", "1.1.8", "1.1.11", "1.1.12"] + [f"2.{i}" for i in range(1, 8)]
    assert failed(rows) == {}


def test_an_admin_credential_is_only_on_the_ca_minion(cis, conf, make_settings):
    nodes = {"master01": {"roles": ["master", "etcd"], "ip": "10.240.0.11"}, "master02": {"roles": ["master"],
             "ip": "10.240.0.12"}}  # fmt: skip
    cfg = make_settings({"nodes": nodes}, minion_id="master02", validate=True)
    rows = {r["id"]: r for r in cis._evaluate(cfg, "master02", lambda n: getattr(conf, n), live=False)["checks"]}
    assert rows["1.1.13"]["result"] == "N/A" and "CA minion (master01)" in rows["1.1.13"]["detail"]
    assert not [i for i in rows if i.startswith("5.")] and failed(rows) == {}


# -- rendered mode: each class of check fails when its setting is weakened ---------------------------------------------
WEAKENED = {
    "apiserver flags": (
        {"apiserver": {"extra_flags": ["--anonymous-auth=true", "--profiling=true", "--token-auth-file=/t.csv"]}},
        {"1.2.1", "1.2.2", "1.2.15"},
    ),
    "apiserver list flags add up": (
        {"apiserver": {"extra_flags": ["--authorization-mode=AlwaysAllow", "--enable-admission-plugins=AlwaysAdmit",
                                       "--disable-admission-plugins=ServiceAccount,NamespaceLifecycle"]}},
        {"1.2.6", "1.2.10", "1.2.12", "1.2.13"},
    ),
    "auditing off": ({"apiserver": {"audit_rules": []}}, {"1.2.16", "1.2.17", "1.2.18", "1.2.19", "3.2.1"}),
    "service-account tokens extended": (
        {"apiserver": {"extra_flags": ["--service-account-extend-token-expiration=true"]}},
        {"1.2.30"},
    ),
    "weak TLS": (
        {"tls": {"cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA"]}},
        {"1.2.29", "4.2.12"},
    ),
    "controller-manager flags": (
        {"controller_manager": {"extra_flags": [
            "--use-service-account-credentials=false", "--bind-address=0.0.0.0", "--profiling=true",
            "--feature-gates=RotateKubeletServerCertificate=false"]}},
        {"1.3.2", "1.3.3", "1.3.6", "1.3.7"},
    ),
    "scheduler flags": ({"scheduler": {"extra_flags": ["--profiling=true"]}}, {"1.4.1"}),
    "etcd runs as root": ({"etcd": {"user": ""}}, {"1.1.12"}),
    "kubelet config file": (
        {"kubelet": {"config": {"authentication": {"anonymous": {"enabled": True}}, "readOnlyPort": 10255,
                                "makeIPTablesUtilChains": False, "streamingConnectionIdleTimeout": "0s",
                                "authorization": {"mode": "AlwaysAllow"},
                                "featureGates": {"RotateKubeletServerCertificate": False}}}},
        {"4.2.1", "4.2.2", "4.2.4", "4.2.5", "4.2.6", "4.2.11"},
    ),
    "a kubelet flag overrides its config file": (
        {"kubelet": {"extra_flags": ["--anonymous-auth=true", "--event-qps=-1"]}},
        {"4.2.1", "4.2.8"},
    ),
    "pod pids unlimited": ({"kubelet": {"pod_pids_limit": -1}}, {"4.2.13"}),
    "kube-proxy metrics on every address": (
        {"kube_proxy": {"config": {"metricsBindAddress": "0.0.0.0:10249"}}},
        {"4.3.1"},
    ),
    "PodSecurity enforces nothing": (
        {"apiserver": {"pod_security": {"enforce": "privileged", "audit": "restricted", "warn": "restricted",
                                        "exempt_namespaces": []}}},
        {"5.2.1"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(WEAKENED))
def test_a_weakened_setting_fails_its_checks(rendered, case):
    pillar, expected = WEAKENED[case]
    assert set(failed(rendered("master01", **pillar))) == expected


def test_a_weakened_file_mode_in_a_spec_fails(cis, conf, settings, monkeypatch):
    real = conf.kubelet

    def loose(config, minion_id):
        spec = real(config, minion_id)
        for file in spec["files"].values():
            file["mode"] = "0644"
        return spec

    monkeypatch.setattr(conf, "kubelet", loose)
    rows = {r["id"]: r for r in cis._evaluate(settings("worker01"), "worker01", lambda n: getattr(conf, n), live=False)[
        "checks"]}  # fmt: skip
    assert set(failed(rows)) == {"4.1.5", "4.1.9"}
    assert "/etc/kubernetes/kubelet.conf is 0644" in rows["4.1.5"]["detail"]


def test_satisfying_a_not_applicable_check_passes_it(rendered):
    rows = rendered(
        "master01",
        apiserver={"extra_flags": ["--enable-admission-plugins=DenyServiceExternalIPs,AlwaysPullImages"]},
        kubelet={"config": {"rotateCertificates": True}},
    )
    assert {rows[i]["result"] for i in ("1.2.3", "1.2.11", "4.2.10")} == {"PASS"}
    assert rows["1.2.14"]["result"] == "PASS"  # NodeRestriction still there: the repeated flag adds up


def test_seccomp_default_turned_off_is_not_applicable_with_its_reason(rendered):
    row = rendered("worker01", kubelet={"seccomp_default": False})["4.2.14"]
    assert row["result"] == "N/A" and "k8s:kubelet:seccomp_default" in row["detail"]


# -- live mode: a node directory and a process table -------------------------------------------------------------------
@pytest.fixture
def node(cis, conf, make_settings, tmp_path):
    """A master+etcd node written as the formulas would (every declared file with its mode, root's) under an
    fs_root, and a process table (``proc``) the test fills."""
    root, proc = tmp_path / "root", tmp_path / "proc"
    proc.mkdir()
    cfg = make_settings({"nodes": copy.deepcopy(INVENTORY), "fs_root": str(root)}, minion_id="master01", validate=True)
    declared = cis._Node(cfg, "master01", lambda n: getattr(conf, n), live=False).declared
    contents = {}
    for spec in [getattr(conf, f)(cfg, "master01") for f in ("apiserver", "controller_manager", "scheduler", "etcd",
                                                                "kubelet", "kube_proxy", "network")]:  # fmt: skip
        contents.update({path: file["contents"] for path, file in spec["files"].items()})
    contents[pki.layout(cfg)["secrets"]["encryption-config"]["path"]] = pki.generate_secret("encryption-config")
    for path, (mode, _) in declared.items():
        if mode & 0o100:  # the etcd data directory
            os.makedirs(path, mode)
            os.chmod(path, mode)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(contents.get(path, f"CA {os.path.basename(path)}\n"))
        os.chmod(path, mode)
    etcd_user = conf.etcd_user(cfg)
    os.chown(cfg["paths"]["etcd_data_dir"], *_ids(etcd_user))
    pids = iter(range(1000, 2000))

    def start(component, argv=None, environ=(), exe=None):
        """A process entry for ``component`` running its rendered flags (or ``argv``)."""
        spec = getattr(conf, cis.COMPONENTS[component][0])(cfg, "master01")
        pid = next(pids)
        (proc / str(pid)).mkdir()
        argv = argv or [spec["exec"], *spec["flags"]]
        (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        (proc / str(pid) / "environ").write_bytes(b"".join(f"{e}\0".encode() for e in environ))
        os.symlink(exe or spec["exec"], proc / str(pid) / "exe")
        return pid

    def report(**kw):
        out = cis._evaluate(cfg, "master01", lambda n: getattr(conf, n), live=True, proc_root=str(proc), **kw)
        return out, {row["id"]: row for row in out["checks"]}

    return {"config": cfg, "start": start, "report": report, "proc": proc}


def _ids(user):
    import grp
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid, grp.getgrnam(user).gr_gid
    except KeyError:
        pytest.skip(f"no system user '{user}' here (Debian's etcd-server package creates it)")


def _with_credentials(argv, tmp, cfg):
    """etcd's argv with systemd's credential directory replaced by copies of the files the PKI wrote."""
    creds = tmp / "credentials"
    creds.mkdir(exist_ok=True)
    for name in ("etcd-ca.crt", "etcd-server.crt", "etcd-server.key", "etcd-peer.crt", "etcd-peer.key"):
        (creds / name).write_bytes(pathlib.Path(cfg["paths"]["pki_dir"], name).read_bytes())
    return [a.replace("/run/credentials/etcd.service", str(creds)) for a in argv]


def start_all(node, conf, tmp_path, etcd_argv=None, etcd_env=()):
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"):
        node["start"](component)
    spec = conf.etcd(node["config"], "master01")
    argv = _with_credentials(etcd_argv or [spec["exec"], *spec["flags"]], tmp_path, node["config"])
    return node["start"]("etcd", argv=argv, environ=etcd_env)


def test_live_a_node_as_written_with_its_processes_running_passes_like_rendered(node, conf, rendered, tmp_path):
    etcd = start_all(node, conf, tmp_path)
    out, rows = node["report"]()
    assert failed(rows) == {}
    assert out["source"] == "live" and out["processes"]["etcd"] == etcd and None not in out["processes"].values()
    expected = rendered("master01")
    assert {i: r["result"] for i, r in rows.items()} == {i: r["result"] for i, r in expected.items()}
    assert "0700" in rows["1.1.11"]["detail"] and "etcd:etcd" in rows["1.1.12"]["detail"]


def test_live_a_file_mode_or_owner_changed_on_disk_fails(node, conf, tmp_path):
    start_all(node, conf, tmp_path)
    cfg = node["config"]
    unit = f"{cfg['paths']['unit_dir']}/kube-apiserver.service"
    os.chmod(unit, 0o644)
    os.chown(conf.kubeconfig_path(cfg, "kubelet"), 65534, 65534)
    os.chmod(cfg["paths"]["etcd_data_dir"], 0o755)
    os.chown(cfg["paths"]["etcd_data_dir"], 0, 0)
    key = f"{cfg['paths']['pki_dir']}/apiserver.key"
    os.chmod(key, 0o640)
    os.chown(f"{cfg['paths']['pki_dir']}/etcd-peer.crt", 0, 65534)
    _, rows = node["report"]()
    assert set(failed(rows)) == {"1.1.1", "4.1.6", "1.1.11", "1.1.12", "1.1.19", "1.1.21"}
    assert rows["1.1.1"]["detail"] == f"{unit} is 0644"
    assert f"{key} is 0640" in rows["1.1.21"]["detail"] and "etcd-peer.crt is root:nogroup" in rows["1.1.19"]["detail"]
    os.unlink(f"{cfg['paths']['config_dir']}/kubelet.yaml")
    _, rows = node["report"]()
    assert "kubelet.yaml missing" in rows["4.1.9"]["detail"] and rows["4.2.1"]["result"] == "FAIL"


def test_live_flags_come_from_the_running_process_and_etcds_environment(node, conf, tmp_path):
    spec = conf.etcd(node["config"], "master01")
    start_all(
        node,
        conf,
        tmp_path,
        etcd_argv=[spec["exec"], *spec["flags"], "--peer-auto-tls"],
        etcd_env=["ETCD_AUTO_TLS=true", "ETCD_CLIENT_CERT_AUTH=false"],
    )
    _, rows = node["report"]()
    # --client-cert-auth on the command line wins over the environment; the others are taken from it
    assert set(failed(rows)) == {"2.3", "2.6"}
    assert rows["2.3"]["detail"] == "--auto-tls=true" and rows["2.6"]["detail"] == "--peer-auto-tls=true"


def test_live_a_component_that_is_not_running_fails_its_flag_checks(node, conf, tmp_path):
    node["start"]("kubelet")
    node["start"]("kube-proxy")
    out, rows = node["report"]()
    assert out["processes"]["kube-apiserver"] is None
    not_running = {i for i, r in rows.items() if r["result"] == "FAIL" and "is not running" in r["detail"]}
    assert not_running == set(failed(rows))
    assert {"1.2.1", "1.3.2", "1.4.1", "2.1", "2.7", "3.2.1", "5.2.1"} <= not_running
    assert not {i for i in not_running if i.startswith(("1.1.", "4."))}
    assert rows["4.2.1"]["result"] == "PASS"


def test_live_the_second_etcd_of_someone_else_is_ignored_with_pids(node, conf, tmp_path):
    spec = conf.etcd(node["config"], "master01")
    start_all(node, conf, tmp_path)
    other = node["start"]("etcd", argv=["/usr/bin/etcd", "--auto-tls=true"])
    _, rows = node["report"]()  # both are etcd: the one started as the unit's ExecStart wins
    assert rows["2.3"]["result"] == "PASS"
    _, rows = node["report"](pids=[other])
    assert rows["2.3"]["result"] == "FAIL" and rows["1.2.1"]["result"] == "FAIL"
    assert spec["exec"] != "/usr/bin/etcd"


# -- the pieces --------------------------------------------------------------------------------------------------------
def test_flags_are_read_as_pflag_reads_them(cis):
    flags = cis._flags(
        [
            "--a=1",
            "--b",
            "2",
            "--bool",
            "--enable-admission-plugins=X",
            "-v=2",
            "--enable-admission-plugins=Y",
            "--a=3",
        ],
        {"a": "0", "env-only": "e"},
    )
    assert flags == {
        "a": ["1", "3"],
        "b": ["2"],
        "bool": ["true"],
        "enable-admission-plugins": ["X", "Y"],
        "v": ["2"],
        "env-only": ["e"],
    }
    assert cis._etcd_environment({"ETCD_AUTO_TLS": "true", "PATH": "/bin"}) == {"auto-tls": "true"}


def test_a_process_is_found_by_its_executables_name(cis):
    table = [
        (10, ["/opt/etcd"], "/opt/etcd"),
        (20, ["etcd", "--x"], "/usr/bin/etcd"),
        (30, ["/usr/local/bin/etcd"], "/usr/local/bin/etcd"),
        (40, ["sh", "-c", "etcd"], "/bin/dash"),
        (50, ["runner"], "/usr/local/bin/kube-apiserver (deleted)"),
    ]
    assert cis._find_process(table, "/usr/local/bin/etcd")[0] == 30
    assert cis._find_process(table[:2], "/usr/local/bin/etcd")[0] == 10
    assert cis._find_process(table, "/usr/local/bin/kube-apiserver")[0] == 50
    assert cis._find_process(table, "/usr/local/bin/kubelet") is None


def test_a_process_of_another_pid_namespace_is_not_this_nodes(cis, tmp_path):
    """A host sees the processes of its containers (the lab's nodes run kubelets under this very machine)."""
    for pid, namespace in (("self", "pid:[1]"), ("10", "pid:[2]"), ("20", "pid:[1]"), ("30", None)):
        (tmp_path / pid / "ns").mkdir(parents=True)
        (tmp_path / pid / "cmdline").write_bytes(b"/usr/local/bin/kubelet\0--config=/x\0")
        if namespace:
            os.symlink(namespace, tmp_path / pid / "ns" / "pid")
    assert [p[0] for p in cis._processes(str(tmp_path), None)] == [20, 30]
    (tmp_path / "self" / "ns" / "pid").unlink()  # namespaces unknown: every process counts
    assert [p[0] for p in cis._processes(str(tmp_path), [10, 20])] == [10, 20]


def test_report_sets_the_exit_code_only_when_a_check_fails(conf, settings):
    cfg = settings("worker01")
    salt = {"k8s.config": lambda validate=False: cfg, **{f"k8s_conf.{n}": getattr(conf, n) for n in dir(conf)}}
    module = load("k8s_cis", __salt__=salt, __opts__={"id": "worker01", "test": False})
    out = module.report(live=False)
    assert out["counts"]["total"]["FAIL"] == 0 and "retcode" not in module.__context__
    assert out["counts"]["4"] == out["counts"]["total"] and "processes" not in out
    module = load("k8s_cis", __salt__=salt, __opts__={"id": "worker01", "test": False})
    out = module.report(live=True, pids="999999999")  # nothing runs: the kubelet's flag checks fail
    assert out["counts"]["total"]["FAIL"] > 0 and module.__context__["retcode"] == 1
    assert out["processes"] == {"kubelet": None, "kube-proxy": None}
    with pytest.raises(SaltInvocationError, match="sections: 7"):
        module.report(sections="4,7")
    assert {r["id"][0] for r in module.report(live=False, sections=4)["checks"]} == {"4"}


# -- docs/cis-benchmark.md says what the code does -------------------------------------------------------------------
DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "cis-benchmark.md"
WHERE = {"master": "masters", "etcd": "etcd members", "node": "every node", "ca": "CA minion"}


def _doc_rows(heading):
    text = DOC.read_text().split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]  # without the header


def test_the_benchmark_document_lists_every_check_with_the_results_of_the_code(cis, rendered):
    rows = _doc_rows("## Every check")
    new, old = rendered("master01"), rendered("master01", "1.20")
    expected = [
        [c["id"], c["title"], c["type"], WHERE[c["runs_on"]], new[c["id"]]["result"], old[c["id"]]["result"]]
        for c in cis.checks()
    ]
    assert [row[:6] for row in rows] == expected
    assert all(row[6] for row in rows)


def test_the_benchmark_document_counts_are_the_codes(cis, conf, settings):
    nodes = {"master + etcd": "master01", "worker": "worker01"}
    releases = {"1.34.10 (default)": "default", "1.20.2 (the lab)": "1.20"}
    rows = {row[0]: row[1:] for row in _doc_rows("## Counts")}
    assert len(rows) == len(nodes) * len(releases)
    for label, minion in nodes.items():
        for version, release in releases.items():
            counts = cis._evaluate(settings(minion, release), minion, lambda n: getattr(conf, n), live=False)["counts"]
            want = [
                " / ".join(str(counts[s][r]) for r in cis.RESULTS) if s in counts else "-"
                for s in ("1", "2", "3", "4", "5", "total")
            ]
            assert rows[f"{label}, {version}"] == want
