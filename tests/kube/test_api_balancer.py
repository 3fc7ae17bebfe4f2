"""The node-local API balancer for real: haproxy (Debian's) with the configuration k8s_conf.api_balancer_config
renders, in front of a real kube-apiserver 1.20. Its health checks present the node's kube-proxy certificate and verify
the API server's, a master that does not answer is skipped, and a reload keeps an open watch."""

import copy
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import requests

from tests.support import etcd_cluster
from tests.support.loader import load

pytestmark = pytest.mark.kube
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


@pytest.fixture(scope="module")
def balancer(plane, tmp_path_factory):
    """haproxy for worker01, with master01 = the real API server on 127.0.0.1 and master02 = an address where
    nothing listens (127.0.0.2), both on the API server's port, as the pillar would list two masters."""
    assert os.access(HAPROXY, os.X_OK), "haproxy missing: tests/bootstrap.sh installs Debian's"
    config = copy.deepcopy(plane.config("worker01"))
    port = etcd_cluster.free_ports(1)[0]
    config["api_balancer"].update(enabled=True, port=port, check_interval=1)
    config["nodes"]["master01"]["ip"] = "127.0.0.1"
    config["nodes"]["master02"] = {"roles": ["master"], "ip": "127.0.0.2"}
    config["cluster"]["masters"] = ["master01", "master02"]
    path = tmp_path_factory.mktemp("balancer") / "api-balancer.cfg"
    path.write_text(load("k8s_conf").api_balancer_config(config, "worker01"))
    check = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # -W: master-worker as in the unit (-Ws there only adds systemd's readiness notification).
    process = subprocess.Popen(
        [HAPROXY, "-W", "-f", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"https://127.0.0.1:{port}"
    try:
        yield process, url
    finally:
        process.terminate()
        process.wait(timeout=20)


def _get(session, url, timeout=5):
    try:
        return session.get(url, timeout=timeout).status_code
    except requests.RequestException as exc:
        return type(exc).__name__


def test_requests_through_the_balancer_reach_only_the_master_that_answers_readyz(plane, balancer):
    process, url = balancer
    session = plane.session()  # the admin client; the server certificate is checked for 127.0.0.1
    deadline = time.monotonic() + 30
    while _get(session, f"{url}/readyz") != 200:
        assert process.poll() is None, process.stdout.read().decode(errors="replace")
        assert time.monotonic() < deadline, "the balancer did not pass /readyz within 30 s"
        time.sleep(0.5)
    time.sleep(3)  # master02 (nothing listens) marked down after fall 2 x inter 1 s
    answers = [_get(session, f"{url}/api/v1/namespaces/default") for _ in range(40)]
    assert answers == [200] * 40  # none went to the dead master


def test_a_client_certificate_the_api_server_refuses_fails_the_health_checks(plane, tmp_path):
    """The checks are real TLS + authentication: with a certificate of another CA every master is down."""
    config = copy.deepcopy(plane.config("worker01"))
    port = etcd_cluster.free_ports(1)[0]
    config["api_balancer"].update(enabled=True, port=port, check_interval=1)
    config["nodes"]["master01"]["ip"] = "127.0.0.1"
    foreign = etcd_cluster.Pki(tmp_path / "foreign")
    cert, _key = foreign.issue("kube-proxy", "system:kube-proxy", directory=tmp_path)
    text = load("k8s_conf").api_balancer_config(config, "worker01")
    kube_proxy_crt = config["paths"]["pki_dir"] + "/kube-proxy.crt"
    path = tmp_path / "api-balancer.cfg"
    path.write_text(text.replace(kube_proxy_crt, str(cert)))
    process = subprocess.Popen([HAPROXY, "-W", "-f", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        time.sleep(4)
        status = _get(plane.session(), f"https://127.0.0.1:{port}/readyz", timeout=3)
        assert status != 200, status
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_reload_keeps_an_open_watch_and_takes_new_connections(plane, balancer):
    process, url = balancer
    session = plane.session()
    events, opened = [], threading.Event()

    def watch():
        with session.get(f"{url}/api/v1/namespaces?watch=1&timeoutSeconds=60", stream=True, timeout=70) as answer:
            opened.set()
            for line in answer.iter_lines():
                event = json.loads(line)
                events.append((event["type"], event["object"]["metadata"]["name"]))
                if event["object"]["metadata"]["name"] == "after-reload":
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert opened.wait(20)
    os.kill(process.pid, signal.SIGUSR2)  # what ExecReload sends the master process
    time.sleep(2)
    assert process.poll() is None
    new = session.post(f"{url}/api/v1/namespaces", json={"metadata": {"name": "after-reload"}}, timeout=10)
    assert new.status_code == 201, new.text  # a new connection, served by the new worker
    thread.join(30)
    assert ("ADDED", "after-reload") in events  # seen on the connection opened before the reload
    session.delete(f"{url}/api/v1/namespaces/after-reload", timeout=10)
