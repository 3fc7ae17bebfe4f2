"""A real etcd cluster for tests: N members on free 127.0.0.1 ports in a temporary directory, mutual TLS on client
and peer ports (``--client-cert-auth --peer-client-cert-auth``), certificates made with kubesalt's own
``_modules/k8s_pki.py``. Single members can be stopped and started again; everything is stopped on exit.

    with etcd_cluster.running(tmp_path) as cluster:
        k8s_etcd.put("/a", "1", **cluster.conn())
        cluster.stop_member("etcd2")
"""

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import time

import requests

from kubesalt import x509
from tests.support.loader import load

ETCD = os.environ.get("KUBESALT_TEST_ETCD", "/usr/bin/etcd")
START_TIMEOUT = 30


def free_ports(count):
    """``count`` distinct free TCP ports on 127.0.0.1 (held open together, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def write_file(path, text, mode=0o600):
    path = pathlib.Path(path)
    path.write_text(text)
    path.chmod(mode)
    return str(path)


class Pki:
    """A CA and helpers that issue certificates into files, all through k8s_pki."""

    def __init__(self, directory, common_name="kubesalt-test-etcd-ca"):
        self.pki = load("k8s_pki")
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key_pem = x509.generate_private_key()
        self.cert_pem = x509.create_ca(self.key_pem, common_name)
        self.ca_file = write_file(self.dir / "ca.crt", self.cert_pem)

    def issue(self, basename, common_name, usages=("client",), ips=(), dns=(), directory=None):
        """Write ``<basename>.crt`` and ``<basename>.key`` (into ``directory`` or the CA's); return both paths."""
        key_pem = x509.generate_private_key()
        csr_pem = x509.create_csr(key_pem, common_name)
        cert_pem = x509.sign_certificate(
            self.cert_pem, self.key_pem, csr_pem, common_name, dns=tuple(dns), ips=tuple(ips), usages=tuple(usages)
        )
        directory = pathlib.Path(directory or self.dir)
        return write_file(directory / f"{basename}.crt", cert_pem), write_file(directory / f"{basename}.key", key_pem)


class Member:
    def __init__(self, name, client_port, peer_port, directory):
        self.name, self.client_port, self.peer_port = name, client_port, peer_port
        self.dir = pathlib.Path(directory)
        self.client_url = f"https://127.0.0.1:{client_port}"
        self.peer_url = f"https://127.0.0.1:{peer_port}"
        self.log = self.dir / "etcd.log"
        self.process = None

    def log_tail(self, lines=15):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_etcd(flags, log_path, env_file_text=None):
    """Start the etcd binary with ``flags``; its output goes to ``log_path``. ``env_file_text``: the lines of a
    systemd EnvironmentFile (``NAME=value``, ``#`` comments) to start it with, as its unit would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    for line in (env_file_text or "").splitlines():
        if line.strip() and not line.startswith("#"):
            name, value = line.split("=", 1)
            env[name] = value
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [ETCD, *flags],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def stop_process(process, timeout=10):
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def wait_healthy(url, ca, cert, key, timeout=START_TIMEOUT, process=None, log=None):
    """Poll ``url``/health over mutual TLS until it says true; raise with the log's tail when it does not."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        try:
            answer = requests.get(f"{url}/health", verify=ca, cert=(cert, key), timeout=2)
            if answer.json().get("health") == "true":
                return
            last = answer.text
        except (requests.RequestException, ValueError) as exc:
            last = exc
        time.sleep(0.2)
    tail = pathlib.Path(log).read_text(errors="replace")[-3000:] if log else ""
    raise RuntimeError(f"etcd at {url} did not become healthy (last: {last})\n{tail}")


class EtcdCluster:
    """``size`` members named etcd1..etcdN, all on 127.0.0.1 with free ports, under ``directory``. More members can
    be made with :py:meth:`add_member` and started to join the running cluster."""

    def __init__(self, directory, size=3, token="kubesalt-test"):
        self.dir = pathlib.Path(directory)
        self.token = token
        self.pki = Pki(self.dir / "pki")
        self.ca = self.pki.ca_file
        self.client_cert, self.client_key = self.pki.issue("client", "kubesalt-test-client")
        self.members = {}
        for index in range(size):
            self.add_member(f"etcd{index + 1}")

    def add_member(self, name):
        """A new member (ports, directory, certificate), not started and not in the cluster yet."""
        client_port, peer_port = free_ports(2)
        member = Member(name, client_port, peer_port, self.dir / name)
        member.dir.mkdir(parents=True)
        member.cert, member.key = self.pki.issue(
            "server",
            name,
            usages=("server", "client"),
            ips=("127.0.0.1",),
            dns=("localhost", name),
            directory=member.dir,
        )
        member.state, member.initial_cluster = "new", None
        self.members[name] = member
        return member

    @property
    def data_dirs(self):
        return {name: member.dir / "data" for name, member in self.members.items()}

    @property
    def inventory(self):
        """``{member: peer URL}`` of every member, as ``k8s:nodes`` would give them."""
        return {m.name: m.peer_url for m in self.members.values()}

    @property
    def endpoints(self):
        return [m.client_url for m in self.members.values()]

    def conn(self, **overrides):
        """Connection arguments for k8s_etcd functions and states."""
        conn = {
            "endpoints": self.endpoints,
            "ca": self.ca,
            "cert": self.client_cert,
            "key": self.client_key,
            "timeout": 5,
        }
        conn.update(overrides)
        return conn

    def _flags(self, member):
        cluster = member.initial_cluster or {m.name: m.peer_url for m in self.members.values()}
        initial = ",".join(f"{name}={url}" for name, url in cluster.items())
        return [
            f"--name={member.name}",
            f"--data-dir={member.dir / 'data'}",
            f"--listen-client-urls={member.client_url}",
            f"--advertise-client-urls={member.client_url}",
            f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={initial}",
            f"--initial-cluster-token={self.token}",
            f"--initial-cluster-state={member.state}",
            "--client-cert-auth",
            f"--trusted-ca-file={self.ca}",
            f"--cert-file={member.cert}",
            f"--key-file={member.key}",
            "--peer-client-cert-auth",
            f"--peer-trusted-ca-file={self.ca}",
            f"--peer-cert-file={member.cert}",
            f"--peer-key-file={member.key}",
            "--logger=zap",
            "--log-outputs=stderr",
        ]

    def start(self):
        for member in self.members.values():
            self.start_member(member.name, wait=False)
        self.wait_healthy()
        return self

    def start_member(self, name, wait=True, state=None, initial_cluster=None):
        """Start member ``name``; ``state`` and ``initial_cluster`` ({name: peer URL}) for its first start."""
        member = self.members[name]
        if state:
            member.state, member.initial_cluster = state, initial_cluster
        if member.process is None or member.process.poll() is not None:
            member.process = start_etcd(self._flags(member), member.log)
        if wait:
            self.wait_healthy([name])

    def stop_member(self, name):
        stop_process(self.members[name].process)

    def wait_healthy(self, names=None, timeout=START_TIMEOUT):
        for name in names or list(self.members):
            member = self.members[name]
            wait_healthy(
                member.client_url, self.ca, self.client_cert, self.client_key, timeout, member.process, member.log
            )

    def stop(self):
        for member in self.members.values():
            stop_process(member.process)


@contextlib.contextmanager
def running(directory, size=3):
    """A started :py:class:`EtcdCluster`; every member is stopped when the block ends, whatever happens."""
    cluster = EtcdCluster(directory, size=size)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
