"""A real Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager on free 127.0.0.1
ports in a temporary directory, every certificate and key issued by kubesalt's own PKI modules.

The certificates come from the k8s_pki harness (tests/support/pki_fixtures.py): a five-node inventory (master01..03
with the etcd role, worker01..02) whose nodes each have their own fs_root, so ``config("worker01")`` is what that
minion's ``k8s.config`` would return and its ``pki_dir`` holds only what worker01 is entitled to. master01 is the CA
minion and runs the control plane:

- etcd (Debian's ``/usr/bin/etcd``, ``KUBESALT_TEST_ETCD`` overrides), one member, mutual TLS on both ports, with
  master01's ``etcd-server``/``etcd-peer`` certificates;
- kube-apiserver 1.20.2 (``KUBESALT_KUBE_BIN_DIR`` overrides the cache directory that
  ``tests/lab/build/kubernetes.sh`` fills): client certificates from the Kubernetes CA,
  ``--authorization-mode=Node,RBAC``, ``--enable-admission-plugins=NodeRestriction``, the cluster's service-account
  key and EncryptionConfiguration, and an audit log of every write (:py:meth:`ControlPlane.writes`), so tests can
  show that a call sent no write at all;
- kube-controller-manager with its own certificate (Deployment and ReplicaSet status, service-account tokens, the
  node lifecycle controller).

The settings of every minion point ``k8s:apiserver:endpoint`` and ``k8s:apiserver:port`` at this API server.

    with apiserver.running(tmp_path) as plane:
        k8s_kube.get(plane.config("master01"), "Namespace", "kube-system")

Every process is stopped when the block ends, whatever happens.
"""

import contextlib
import json
import os
import pathlib
import subprocess
import time

import requests
import yaml
from cryptography.hazmat.primitives import serialization

from tests.support import etcd_cluster
from tests.support.pki_fixtures import Cluster, formula_yaml

VERSION = "1.20.2"
# where tests/lab/build/kubernetes.sh puts them: under $KUBESALT_CACHE, like every other build
CACHE = os.environ.get("KUBESALT_CACHE", "/var/cache/kubesalt")
BIN_DIR = os.environ.get("KUBESALT_KUBE_BIN_DIR", f"{CACHE}/kubernetes/{VERSION}/bin")
BINARIES = ("kube-apiserver", "kube-controller-manager")
START_TIMEOUT = 90
SKIP_REASON = (
    f"Kubernetes {VERSION} server binaries not found in {BIN_DIR} (set KUBESALT_KUBE_BIN_DIR): run `make test-kube`, "
    "which builds them with tests/lab/build/kubernetes.sh (~13 min, cached)"
)

# Every write (and every SubjectAccessReview) at Metadata level; reads are not logged.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}


def missing():
    """What is missing to start the control plane (empty when everything is there)."""
    absent = [f"{BIN_DIR}/{b}" for b in BINARIES if not os.access(f"{BIN_DIR}/{b}", os.X_OK)]
    if not os.access(etcd_cluster.ETCD, os.X_OK):
        absent.append(etcd_cluster.ETCD)
    return absent


class KubeCluster(Cluster):
    """The k8s_pki harness with Kubernetes 1.20 settings. Not validated: the artifact catalogue pins no 1.20
    binaries (these come from the local build), and validation would refuse the missing digests."""

    def config(self, minion_id):
        pillar = dict(self.pillar, fs_root=str(self.root / minion_id))
        return self._k8s.settings(
            formula_yaml("defaults.yaml")["k8s"],
            formula_yaml("profiles.yaml"),
            pillar,
            formula_yaml("catalogue.yaml"),
            minion_id=minion_id,
            validate=False,
        )


def kubeconfig(path, server, ca, cert, key, user):
    """Write a kubeconfig (built as data) for one client certificate."""
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubesalt", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": user, "user": {"client-certificate": cert, "client-key": key}}],
        "contexts": [{"name": "default", "context": {"cluster": "kubesalt", "user": user}}],
        "current-context": "default",
    }
    pathlib.Path(path).write_text(yaml.safe_dump(data))
    return str(path)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager for the inventory of :py:class:`KubeCluster`."""

    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.etcd_port, self.peer_port, self.port = etcd_cluster.free_ports(3)
        self.server = f"https://127.0.0.1:{self.port}"
        self.cluster = KubeCluster(self.dir / "minions")
        self.cluster.pillar.update(
            versions={"kubernetes": VERSION},
            apiserver={"port": self.port, "endpoint": self.server},
            # One API server and no node-local balancer in front of it (tests/kube/test_api_balancer.py runs one).
            api_balancer={"enabled": False},
        )
        self.processes = {}
        self.logs = {}
        self.audit_log = self.dir / "audit.log"

    # settings and files ---------------------------------------------------------------------------------------------
    def config(self, minion_id="master01"):
        return self.cluster.config(minion_id)

    def files(self, identity, minion_id="master01"):
        """``{"cert", "key", "ca_file"}`` paths (str) of ``identity`` held by ``minion_id``."""
        return {k: str(v) for k, v in self.cluster.files(minion_id, identity).items()}

    @property
    def pki_dir(self):
        return pathlib.Path(self.config()["paths"]["pki_dir"])

    def session(self, identity="admin", minion_id="master01"):
        """A requests session authenticated with ``minion_id``'s certificate for ``identity``."""
        files = self.files(identity, minion_id)
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.pki_dir / "kubernetes-ca.crt")
        session.cert = (files["cert"], files["key"])
        return session

    # processes ------------------------------------------------------------------------------------------------------
    def _spawn(self, name, argv):
        log = self.dir / f"{name}.log"
        self.logs[name] = log
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD", "KUBE"))}
        with open(log, "ab") as out:
            self.processes[name] = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        return self.processes[name]

    def log_tail(self, name, chars=4000):
        try:
            return self.logs[name].read_text(errors="replace")[-chars:]
        except (KeyError, OSError):
            return "(no log)"

    def _issue_certificates(self):
        self.cluster.create_cas()
        self.cluster.issue_all(
            only=(
                "apiserver",
                "apiserver-kubelet-client",
                "apiserver-etcd-client",
                "front-proxy-client",
                "kube-controller-manager",
                "kube-scheduler",
                "admin",
                "kubelet",
                "kube-proxy",
                "etcd-server",
                "etcd-peer",
                "etcd-healthcheck-client",
            )
        )
        # The cluster secrets, copied to master01's pki_dir as the k8s_pki secret_present state does on masters.
        config = self.config()
        states = self.cluster.states("master01")
        for secret, spec in self.cluster.layout("master01")["secrets"].items():
            ret = states.secret_present(spec["path"], secret, config=config)
            assert ret["result"] is True, ret
        # kube-apiserver's --service-account-key-file reads public keys, RSA private keys (PKCS#1 or #8) and EC private
        # keys only in SEC1 form ("EC PRIVATE KEY"); k8s_pki writes PKCS#8 ("PRIVATE KEY"), which 1.20 refuses with
        # "data does not contain any valid RSA or ECDSA public keys". Give it the public key, as kubeadm does (sa.pub).
        key = serialization.load_pem_private_key((self.pki_dir / "service-account.key").read_bytes(), None)
        (self.pki_dir / "service-account.pub").write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def _start_etcd(self):
        pki = self.pki_dir
        client, peer = f"https://127.0.0.1:{self.etcd_port}", f"https://127.0.0.1:{self.peer_port}"
        flags = [
            "--name=master01",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=master01={peer}",
            "--initial-cluster-token=kubesalt-kube-test",
            "--initial-cluster-state=new",
            "--client-cert-auth",
            f"--trusted-ca-file={pki / 'etcd-ca.crt'}",
            f"--cert-file={pki / 'etcd-server.crt'}",
            f"--key-file={pki / 'etcd-server.key'}",
            "--peer-client-cert-auth",
            f"--peer-trusted-ca-file={pki / 'etcd-ca.crt'}",
            f"--peer-cert-file={pki / 'etcd-peer.crt'}",
            f"--peer-key-file={pki / 'etcd-peer.key'}",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        process = self._spawn("etcd", [etcd_cluster.ETCD, *flags])
        etcd_cluster.wait_healthy(
            client,
            str(pki / "etcd-ca.crt"),
            str(pki / "etcd-healthcheck-client.crt"),
            str(pki / "etcd-healthcheck-client.key"),
            START_TIMEOUT,
            process,
            self.logs["etcd"],
        )
        return client

    def apiserver_flags(self, etcd_url):
        pki = self.pki_dir
        config = self.config()
        policy = self.dir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        return [
            "--advertise-address=127.0.0.1",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.port}",
            *config["apiserver"]["version_flags"],  # --insecure-port=0 on 1.20
            f"--etcd-servers={etcd_url}",
            f"--etcd-cafile={pki / 'etcd-ca.crt'}",
            f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
            f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
            f"--client-ca-file={pki / 'kubernetes-ca.crt'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--kubelet-certificate-authority={pki / 'kubernetes-ca.crt'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--service-account-key-file={pki / 'service-account.pub'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            f"--service-account-issuer=https://kubernetes.default.svc.{config['cluster_domain']}",
            f"--service-cluster-ip-range={config['networks']['service_cidr']}",
            f"--encryption-provider-config={pki / 'encryption-config.yaml'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            # 127.0.0.1 may not be an endpoint of the kubernetes Service (loopback is refused there); no test needs it.
            "--endpoint-reconciler-type=none",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
        ]

    def _start_apiserver(self, etcd_url):
        self.etcd_url = etcd_url
        process = self._spawn("kube-apiserver", [f"{BIN_DIR}/kube-apiserver", *self.apiserver_flags(etcd_url)])
        self.wait_ready(process)

    def restart_apiserver(self):
        """Stop kube-apiserver and start it again with the same flags (it reads its files anew), as systemd does
        when a master's k8s.control-plane restarts it; returns once /readyz answers."""
        etcd_cluster.stop_process(self.processes.pop("kube-apiserver"))
        self._start_apiserver(self.etcd_url)

    def wait_ready(self, process=None, timeout=START_TIMEOUT):
        """Poll /readyz as admin until it answers ok; raise with the log's tail when it does not."""
        session = self.session()
        deadline, last = time.monotonic() + timeout, None
        try:
            while time.monotonic() < deadline:
                if process is not None and process.poll() is not None:
                    last = f"kube-apiserver exited with {process.returncode}"
                    break
                try:
                    answer = session.get(f"{self.server}/readyz", timeout=3)
                    if answer.status_code == 200:
                        return
                    last = f"HTTP {answer.status_code}: {answer.text[:300]}"
                except requests.RequestException as exc:
                    last = exc
                time.sleep(0.5)
        finally:
            session.close()
        raise RuntimeError(f"kube-apiserver at {self.server} not ready ({last})\n{self.log_tail('kube-apiserver')}")

    def _start_controller_manager(self):
        pki, config = self.pki_dir, self.config()
        files = self.files("kube-controller-manager")
        kcfg = kubeconfig(
            self.dir / "kube-controller-manager.conf",
            self.server,
            str(pki / "kubernetes-ca.crt"),
            files["cert"],
            files["key"],
            "system:kube-controller-manager",
        )
        flags = [
            f"--kubeconfig={kcfg}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            *config["controller_manager"]["version_flags"],  # --port=0 on 1.20
            f"--service-account-private-key-file={pki / 'service-account.key'}",
            f"--root-ca-file={pki / 'kubernetes-ca.crt'}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={config['networks']['service_cidr']}",
            # The node lifecycle controller must not evict the test's kubelet-less pods while a test runs.
            "--node-monitor-grace-period=120s",
            "--pod-eviction-timeout=10m",
        ]
        process = self._spawn("kube-controller-manager", [f"{BIN_DIR}/kube-controller-manager", *flags])
        # Its controllers run once the service-account controller has created default/default.
        session = self.session()
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline and process.poll() is None:
                answer = session.get(f"{self.server}/api/v1/namespaces/default/serviceaccounts/default", timeout=3)
                if answer.status_code == 200:
                    return
                time.sleep(0.5)
        finally:
            session.close()
        raise RuntimeError(
            f"kube-controller-manager did not start its controllers (exit code {process.poll()})\n"
            f"{self.log_tail('kube-controller-manager')}"
        )

    def start(self):
        self._issue_certificates()
        etcd_url = self._start_etcd()
        self._start_apiserver(etcd_url)
        self._start_controller_manager()
        return self

    def stop(self):
        for name in reversed(list(self.processes)):
            etcd_cluster.stop_process(self.processes[name])

    # what the API server saw ----------------------------------------------------------------------------------------
    def writes(self, resource=None, name=None, namespace=None, since=0, user=None):
        """The audited write requests (create, update, patch, delete) after audit line ``since``, optionally only
        those on ``resource`` (plural, e.g. deployments) / ``name`` / ``namespace`` / by ``user`` (e.g.
        ``kubernetes-admin``: the controllers write too). Each is the audit event's ``verb``, ``user``,
        ``objectRef`` and ``requestURI``."""
        events = []
        try:
            lines = self.audit_log.read_text().splitlines()
        except FileNotFoundError:
            return events
        for line in lines[since:]:
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if resource and ref.get("resource") != resource:
                continue
            if name and ref.get("name") != name:
                continue
            if namespace and ref.get("namespace") != namespace:
                continue
            if user and (event.get("user") or {}).get("username") != user:
                continue
            events.append(
                {
                    "verb": event.get("verb"),
                    "user": (event.get("user") or {}).get("username"),
                    "objectRef": ref,
                    "requestURI": event.get("requestURI"),
                }
            )
        return events

    def audit_mark(self):
        """The current length of the audit log, for :py:meth:`writes` ``since``."""
        try:
            return len(self.audit_log.read_text().splitlines())
        except FileNotFoundError:
            return 0


@contextlib.contextmanager
def running(directory):
    """A started :py:class:`ControlPlane`; every process is stopped when the block ends, whatever happens."""
    plane = ControlPlane(directory)
    try:
        yield plane.start()
    finally:
        plane.stop()
