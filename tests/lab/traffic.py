"""Load for the lab checks that change the cluster under traffic (test_ha.py, test_upgrade.py): a Deployment of web
pods on both workers (anti-affinity, a PodDisruptionBudget of minAvailable 1) behind a NodePort polled every 0.5 s
from the host, both workers in turn, and API reads every 1 s and Event writes every 2 s made on a worker through its
node-local balancer with its kubelet certificate. :py:func:`lost_writes` compares the acknowledged writes with what
the API server still has."""

import json
import subprocess
import threading
import time

import requests

from tests.lab.conftest import ADMIN, KUBECTL, LAB_SH, kubectl, node_root

BUSYBOX = "kubesalt.lab/busybox:1.35"

# Runs inside a worker with the node's Python: API reads every 1 s and Event writes every 2 s through the node-local
# balancer (127.0.0.1:<port>) with the node's kubelet certificate, a new TLS connection each time. One JSON line per
# call on stdout; stops when the stop file appears. Events are named <tag>-<run>-<seq> and labelled kubesalt-<tag>.
LOAD = r"""
import http.client, json, os, ssl, sys, time
port, node, run, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
tag = sys.argv[5] if len(sys.argv) > 5 else "ha"
pki = "/etc/kubernetes/pki"
ctx = ssl.create_default_context(cafile=f"{pki}/kubernetes-ca.crt")
ctx.load_cert_chain(f"{pki}/kubelet.crt", f"{pki}/kubelet.key")
def call(method, path, body=None):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        conn.request(method, path, body=json.dumps(body) if body else None,
                     headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()
seq, t0 = 0, time.monotonic()
while not os.path.exists(stop):
    tick = time.monotonic()
    ops = [("read", "GET", f"/api/v1/nodes/{node}", None, 200)]
    if seq % 2 == 0:
        name = f"{tag}-{run}-{seq:05d}"
        event = {"apiVersion": "v1", "kind": "Event",
                 "metadata": {"name": name, "namespace": "default", "labels": {f"kubesalt-{tag}": run}},
                 "involvedObject": {"kind": "Node", "name": node, "apiVersion": "v1"},
                 "reason": f"Kubesalt{tag.upper()}", "message": "write under load", "type": "Normal",
                 "source": {"component": f"kubesalt-{tag}", "host": node}}
        ops.append(("write", "POST", "/api/v1/namespaces/default/events", event, 201))
    for op, method, path, body, want in ops:
        try:
            status = call(method, path, body)
            line = {"op": op, "ok": status == want, "status": status}
        except Exception as exc:
            line = {"op": op, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        if op == "write":
            line["name"] = body["metadata"]["name"]
        line["t"] = round(time.monotonic() - t0, 2)
        print(json.dumps(line), flush=True)
    seq += 1
    time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
"""


def web_manifest(namespace, pre_stop_seconds=0, replicas=2, node_port=None, budget=True):
    """The Namespace, the web Deployment (``replicas``, one per node: anti-affinity), its PodDisruptionBudget
    (minAvailable 1; ``budget=False``: none) and NodePort Service (``node_port``: that port, else one the API server
    picks). Each pod serves its name over HTTP on 8080 and logs "started". ``pre_stop_seconds``: a pod being evicted
    keeps serving that long after it is taken out of the Service's endpoints (what a real Deployment does to be
    drained without a failed request); 0: none."""
    pre_stop = (
        f"\n        lifecycle: {{preStop: {{exec: {{command: [sleep, '{pre_stop_seconds}']}}}}}}"
        if pre_stop_seconds
        else ""
    )
    pdb = f"""
---
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {{name: web, namespace: {namespace}}}
spec:
  minAvailable: 1
  selector: {{matchLabels: {{app: web}}}}"""
    port = f", nodePort: {node_port}" if node_port else ""
    return f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {{matchLabels: {{app: web}}}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: web
        image: {BUSYBOX}
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && echo started &&
          exec httpd -f -p 8080 -h /www']
        ports: [{{containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 2}}{pre_stop}{pdb if budget else ""}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080{port}}}]
"""


class ApiProbe:
    """GETs ``path`` from the API with the admin kubeconfig once a second in a thread (``with ApiProbe(...) as p``);
    counts the answers (``ok``) and the failures (``failed``: their messages). Like a client behind a load balancer, a
    request refused by a master whose API server is restarting goes to the next of ``servers`` (API server URLs); it
    fails only when none answers. Without ``servers``: the kubeconfig's server only."""

    def __init__(self, path="/readyz", servers=()):
        self.path, self.servers, self.ok, self.failed, self.stop = path, list(servers), 0, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _get(self):
        for index, server in enumerate(self.servers or [None]):
            try:
                return kubectl(*([f"--server={server}"] if server else []), "get", "--raw", self.path, timeout=10)
            except AssertionError as exc:
                if "refused" not in str(exc) or index >= len(self.servers) - 1:
                    raise
        return None

    def _run(self):
        while not self.stop.is_set():
            try:
                self._get()
                self.ok += 1
            except AssertionError as exc:
                self.failed.append(f"{time.strftime('%T')} {exc}"[:200])
            self.stop.wait(1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)


def kube(server, *args, input=None, timeout=120, check=True):
    """kubectl with the admin credentials against ``server`` (any master: the CA master may be the one down)."""
    out = subprocess.run(
        [str(KUBECTL), f"--kubeconfig={ADMIN}", f"--server={server}", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} -> {out.returncode}: {out.stderr.strip()}")
    return out.stdout


class Traffic:
    """The NodePort poller (host, every 0.5 s, both workers in turn) and the API load inside a worker."""

    def __init__(self, inventory, workers, node_port, balancer_port, run, tag="ha"):
        self.targets = [inventory[w]["ip"] for w in workers[:2]]
        self.node_port = node_port
        self.worker = workers[0]
        self.run, self.tag = run, tag
        self.stop_file = f"/var/tmp/kubesalt-{tag}-{run}.stop"
        self.web = []  # (t, ok, detail)
        self.api = []  # JSON lines from the worker
        self.halt = threading.Event()
        # /var/tmp: a node's /tmp is a tmpfs of its own, not the root the host sees
        self.script = node_root(self.worker) / f"var/tmp/kubesalt-{tag}-{run}.py"
        self.script.write_text(LOAD)
        self.proc = subprocess.Popen(
            [
                "bash",
                str(LAB_SH),
                "exec",
                self.worker,
                "python3",
                f"/var/tmp/kubesalt-{tag}-{run}.py",
                str(balancer_port),
                self.worker,
                run,
                self.stop_file,
                tag,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.threads = [
            threading.Thread(target=self._poll_web, daemon=True),
            threading.Thread(target=self._read_api, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _poll_web(self):
        http = requests.Session()
        http.trust_env = False
        i = 0
        while not self.halt.is_set():
            tick = time.monotonic()
            ip = self.targets[i % len(self.targets)]
            i += 1
            try:
                ok = http.get(f"http://{ip}:{self.node_port}/", timeout=2).status_code == 200
                detail = ""
            except requests.RequestException as exc:
                ok, detail = False, f"{ip}: {type(exc).__name__}"
            self.web.append((time.monotonic(), ok, detail))
            self.halt.wait(max(0.0, 0.5 - (time.monotonic() - tick)))

    def _read_api(self):
        for line in self.proc.stdout:
            try:
                self.api.append(json.loads(line))
            except ValueError:
                pass

    def mark(self):
        return len(self.web), len(self.api)

    def since(self, mark):
        web, api = self.web[mark[0] :], self.api[mark[1] :]
        calls = [a for a in api if a["op"] in ("read", "write")]
        return {
            "web_total": len(web),
            "web_failed": sum(1 for _, ok, _ in web if not ok),
            "web_failures": sorted({d for _, ok, d in web if not ok})[:5],
            "api_total": len(calls),
            "api_failed": sum(1 for a in calls if not a["ok"]),
            "api_failures": sorted({a.get("error") or str(a.get("status")) for a in calls if not a["ok"]})[:5],
        }

    def finish(self):
        (node_root(self.worker) / self.stop_file.lstrip("/")).write_text("stop\n")
        self.proc.wait(timeout=30)
        self.halt.set()
        for t in self.threads:
            t.join(10)
        for path in (self.script, node_root(self.worker) / self.stop_file.lstrip("/")):
            path.unlink(missing_ok=True)

    def lost_writes(self, server):
        """``(acknowledged, lost)``: the names of the Event writes answered 201, and those the API server no longer
        has."""
        acknowledged = {a["name"] for a in self.api if a["op"] == "write" and a["ok"]}
        selector = f"kubesalt-{self.tag}={self.run}"
        stored = json.loads(
            kube(server, "-n", "default", "get", "events", "-l", selector, "-o", "json", check=False) or "{}"
        )
        names = {e["metadata"]["name"] for e in stored.get("items", [])}
        return acknowledged, sorted(acknowledged - names)


def nodes_ready(server):
    items = json.loads(kube(server, "get", "nodes", "-o", "json"))["items"]
    return {
        n["metadata"]["name"]: any(
            c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", [])
        )
        for n in items
    }
