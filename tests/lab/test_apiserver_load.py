"""The load that once crashed the lab's kube-apiserver (issue 15: `fatal error: fault` in filterlatency.trackStarted,
from the vendored reflect2 v1.0.1 built with Go 1.19): CustomResourceDefinition objects created, listed, updated and
deleted while a validating admission webhook -- served by this test from the host on the bridge address, TLS with a
test CA given as caBundle -- is called by the API server for every one of them.

The API server must answer all of it *without restarting*: a crash hidden behind systemd's Restart= fails this
test (MainPID and NRestarts compared before and after on every master, and its journal scanned for `fatal error`
and `panic:`)."""

import base64
import http.server
import json
import ssl
import subprocess
import textwrap
import threading

import pytest

from tests.lab.conftest import ADMIN, KUBECTL, kubectl, kubectl_json, lab, wait_for
from tests.support import test_ca

pytestmark = [pytest.mark.lab, pytest.mark.core]

HOST_IP = "10.240.0.1"  # the host on the lab bridge: the nodes reach it, nothing else does
PORT = 9443
GROUP = "kubesalt.lab"
PLURAL = "labwidgets"
OBJECTS = 30


@pytest.fixture(scope="module")
def webhook(tmp_path_factory):
    """A validating webhook on https://10.240.0.1:9443/validate: denies objects labelled kubesalt.lab/deny=yes,
    allows the rest, and records every AdmissionReview it is sent."""
    d = tmp_path_factory.mktemp("webhook")
    ca, ca_key = test_ca.ca("kubesalt-lab-webhook-test-ca")
    srv, srv_key = test_ca.server(HOST_IP, ca, ca_key)
    (d / "srv.crt").write_text(test_ca.pem(srv) + test_ca.pem(ca))
    (d / "srv.key").write_text(test_ca.key_pem(srv_key))
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            req = review["request"]
            obj = req.get("object") or req.get("oldObject") or {}
            denied = (obj.get("metadata", {}).get("labels") or {}).get(f"{GROUP}/deny") == "yes"
            seen.append(
                (req["operation"], req["resource"]["resource"], req.get("name") or obj.get("metadata", {}).get("name"))
            )
            answer = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": req["uid"], "allowed": not denied},
            }
            if denied:
                answer["response"]["status"] = {"code": 403, "message": "denied by the kubesalt lab test webhook"}
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((HOST_IP, PORT), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "srv.crt", d / "srv.key")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"ca": test_ca.pem(ca).encode(), "seen": seen}
    finally:
        server.shutdown()
        server.server_close()


def apiserver_state(master):
    """(MainPID, NRestarts) of kube-apiserver on ``master`` and a journal cursor to scan from."""
    out = lab("exec", master, "systemctl", "show", "-p", "MainPID", "-p", "NRestarts", "kube-apiserver").stdout
    props = dict(line.split("=", 1) for line in out.split())
    cursor = (
        lab("exec", master, "journalctl", "-u", "kube-apiserver", "-n", "0", "--show-cursor", "--no-pager")
        .stdout.strip()
        .rpartition("cursor: ")[2]
    )
    return props["MainPID"], props["NRestarts"], cursor


def crash_lines(master, cursor):
    out = lab(
        "exec", master, "journalctl", "-u", "kube-apiserver", "--no-pager", "-o", "cat", f"--after-cursor={cursor}"
    ).stdout
    return [
        line for line in out.splitlines() if "fatal error" in line or line.startswith("panic:") or "SIGSEGV" in line
    ]


CRD = textwrap.dedent(f"""\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {{name: {PLURAL}.{GROUP}}}
    spec:
      group: {GROUP}
      scope: Namespaced
      names: {{plural: {PLURAL}, singular: labwidget, kind: LabWidget}}
      versions:
      - name: v1
        served: true
        storage: true
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                properties:
                  size: {{type: integer, minimum: 0}}
                  colour: {{type: string}}
                  tags: {{type: object, additionalProperties: {{type: string}}}}
    """)


def widget(name, size, deny=False):
    labels = {"app": "lab-widgets", **({f"{GROUP}/deny": "yes"} if deny else {})}
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "LabWidget",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"size": size, "colour": "teal", "tags": {f"k{i}": f"v{i}" for i in range(8)}},
        }
    )


def test_crds_and_a_validating_webhook_under_load_do_not_restart_the_apiserver(webhook, masters):
    clean_up()  # what an interrupted earlier run left (a CRD with objects, the webhook configuration)
    before = {m: apiserver_state(m) for m in masters}
    hook = json.dumps(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "kubesalt-lab-widgets"},
            "webhooks": [
                {
                    "name": f"widgets.{GROUP}",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 10,
                    "clientConfig": {
                        "url": f"https://{HOST_IP}:{PORT}/validate",
                        "caBundle": base64.b64encode(webhook["ca"]).decode(),
                    },
                    "rules": [
                        {
                            "apiGroups": [GROUP],
                            "apiVersions": ["v1"],
                            "resources": [PLURAL],
                            "operations": ["CREATE", "UPDATE", "DELETE"],
                        }
                    ],
                }
            ],
        }
    )
    try:
        kubectl("apply", "-f", "-", input=CRD)
        wait_for(
            lambda: any(
                c["type"] == "Established" and c["status"] == "True"
                for c in kubectl_json("get", "crd", f"{PLURAL}.{GROUP}")["status"].get("conditions", [])
            ),
            60,
            "the CRD Established",
        )
        kubectl("apply", "-f", "-", input=hook)

        # The API server calls the webhook for real: a labelled object is refused with the webhook's message (the
        # configuration reaches the admission plugin within seconds).
        def refused():
            rc, err = create(widget("lab-denied", 1, deny=True))
            if rc == 0:  # created before the webhook was active: remove it and try again
                kubectl("delete", PLURAL, "lab-denied", "--wait=true", check=False)
                return None
            return err

        denial = wait_for(refused, 60, "the webhook to deny a labelled LabWidget")
        assert "denied by the kubesalt lab test webhook" in denial, denial

        for i in range(OBJECTS):
            kubectl("create", "-f", "-", input=widget(f"w{i:02d}", i))
        items = kubectl_json("get", PLURAL, "-l", "app=lab-widgets")["items"]
        assert sorted(o["metadata"]["name"] for o in items) == [f"w{i:02d}" for i in range(OBJECTS)]
        for i in range(OBJECTS):
            kubectl("patch", PLURAL, f"w{i:02d}", "--type=merge", "-p", json.dumps({"spec": {"size": i + 100}}))
        sizes = {
            o["metadata"]["name"]: o["spec"]["size"]
            for o in kubectl_json("get", PLURAL, "-l", "app=lab-widgets")["items"]
        }
        assert sizes == {f"w{i:02d}": i + 100 for i in range(OBJECTS)}, sizes
        for _ in range(10):  # lists, the table printer and a field selector: the paths the conformance tests hit
            kubectl("get", PLURAL, "-o", "wide")
            kubectl_json("get", PLURAL, "--field-selector", "metadata.name=w07")
        kubectl("delete", PLURAL, "-l", "app=lab-widgets", "--wait=true")
        assert kubectl_json("get", PLURAL)["items"] == []
    finally:
        clean_up(check=False)

    ops = {(op, res) for op, res, _ in webhook["seen"]}
    assert {("CREATE", PLURAL), ("UPDATE", PLURAL), ("DELETE", PLURAL)} <= ops, ops
    assert sum(1 for op, _, _ in webhook["seen"] if op == "CREATE") >= OBJECTS
    for m, (pid, restarts, cursor) in before.items():
        after_pid, after_restarts, _ = apiserver_state(m)
        crashes = crash_lines(m, cursor)
        assert not crashes, f"kube-apiserver on {m} crashed: {crashes[:5]}"
        assert (after_pid, after_restarts) == (pid, restarts), (
            f"kube-apiserver on {m} restarted during the load: MainPID {pid} -> {after_pid}, NRestarts "
            f"{restarts} -> {after_restarts}"
        )


def clean_up(check=True):
    """Delete the webhook configuration and the CRD (its objects go with it) and wait until they are gone."""
    kubectl("delete", "validatingwebhookconfiguration", "kubesalt-lab-widgets", "--ignore-not-found", check=check)
    kubectl(
        "delete",
        "crd",
        f"{PLURAL}.{GROUP}",
        "--ignore-not-found",
        "--wait=true",
        "--timeout=120s",
        check=check,
        timeout=180,
    )


def create(obj):
    """(exit code, stderr) of `kubectl create` of ``obj``."""
    out = subprocess.run(
        [str(KUBECTL), f"--kubeconfig={ADMIN}", "create", "-f", "-"],
        input=obj,
        text=True,
        capture_output=True,
        timeout=60,
    )
    return out.returncode, out.stderr
