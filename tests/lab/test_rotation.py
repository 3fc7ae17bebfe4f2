"""The secret rotations on the running lab, through the orchestrations an operator runs
(README "Rotating the cluster's secrets"): `salt-run state.orchestrate k8s.rotate.encryption` and
`k8s.rotate.service-account`, each step on the real masters (the API servers restarted by systemd, one master at a
time). The API is probed all along; with one master its restarts are downtime, so failures are recorded and counted
as a fault only with several masters."""

import base64
import json
import time

import pytest
import requests
import yaml

from tests.lab.conftest import ADMIN, STATE, kubectl, kubectl_json, lab, record
from tests.lab.traffic import ApiProbe

pytestmark = pytest.mark.lab


def orchestrate(sls, pillar=None):
    """Run the orchestration on the lab's salt-master; every step must succeed. Returns {step id: its return}."""
    args = ["salt-run", "--out=json", "state.orchestrate", sls]
    if pillar is not None:
        args.append(f"pillar={json.dumps(pillar)}")
    out = lab(*args, timeout=1800, check=False)
    data = json.loads(out.stdout)["data"]
    steps = next(iter(data.values()))
    failed = {sid: s.get("comment") for sid, s in steps.items() if not s.get("result")}
    assert out.returncode == 0 and not failed, f"{sls} failed: {failed}\n{out.stderr[-2000:]}"
    return {sid.split("_|-")[1]: s for sid, s in steps.items()}


def minion_changes(step):
    """The state changes each minion reported for one salt.state step of an orchestration."""
    returns = (step.get("changes") or {}).get("ret") or {}
    return {
        minion: {sid: s["changes"] for sid, s in states.items() if s.get("changes")}
        for minion, states in returns.items()
        if isinstance(states, dict)  # a state run's return; a sync step returns lists
    }


def api_servers(masters):
    """Every master's API server URL, from the lab inventory."""
    nodes = json.loads((STATE / "lab.json").read_text())["nodes"]
    return [f"https://{nodes[m]['ip']}:6443" for m in masters]


def storage(ca_minion):
    out = lab("salt", "--out=json", "--static", ca_minion, "k8s_rotate.secrets_storage")
    return json.loads(out.stdout)[ca_minion]


@pytest.fixture(scope="module")
def ca_minion(masters):
    return masters[0]  # the lab leaves k8s:pki:ca_minion empty: the first master


def test_encryption_key_rotation_by_the_orchestration(masters, ca_minion):
    key = f"lab{int(time.time())}"
    value = base64.b64encode(f"before rotation to {key}".encode()).decode()
    name = f"rotation-{key}"
    kubectl("create", "secret", "generic", name, "-n", "default", f"--from-literal=v=before rotation to {key}")
    before = storage(ca_minion)
    assert before["secrets"][f"default/{name}"].startswith("secretbox:")
    with ApiProbe(f"/api/v1/namespaces/default/secrets/{name}", api_servers(masters)) as probe:
        started = time.monotonic()
        steps = orchestrate("k8s.rotate.encryption", {"rotate_to": key})
        took = time.monotonic() - started
    record("rotation", what="encryption", key=key, seconds=round(took), probes_ok=probe.ok, failed=len(probe.failed))
    if len(masters) > 1:
        assert probe.failed == [], probe.failed
    assert kubectl_json("get", "secret", name, "-n", "default")["data"]["v"] == value
    after = storage(ca_minion)
    assert after["by_key"] == {f"secretbox:{key}": after["total"]}, after["by_key"]
    rewritten = minion_changes(steps[f"Secrets stored under {key}"])[ca_minion]
    assert f"default/{name}" in next(iter(rewritten.values()))["rewritten"]

    again = orchestrate("k8s.rotate.encryption", {"rotate_to": key})
    changed = {sid: minion_changes(step) for sid, step in again.items() if not sid.startswith(("sync ", "validate "))}
    assert all(not any(c.values()) for c in changed.values()), changed


def token_session(directory):
    """A session that trusts the lab's API server (the CA of the admin kubeconfig) and presents no certificate."""
    cfg = yaml.safe_load(ADMIN.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    ca = directory / "lab-ca.crt"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    session = requests.Session()
    session.trust_env, session.verify = False, str(ca)
    return session, cluster["server"]


def new_token():
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 7200}}
    out = kubectl(
        "create", "--raw", "/api/v1/namespaces/default/serviceaccounts/default/token", "-f", "-", input=json.dumps(body)
    )
    return json.loads(out)["status"]["token"]


def kid(jwt):
    header = jwt.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def test_service_account_key_rotation_by_the_orchestration(masters, tmp_path):
    session, server = token_session(tmp_path)

    def accepted(jwt):
        return session.get(f"{server}/api", headers={"Authorization": f"Bearer {jwt}"}, timeout=10).status_code

    orchestrate("k8s.rotate.service-account", {"drop_old": True})  # ends a rotation an earlier run left pending
    old = new_token()
    assert accepted(old) == 200
    with ApiProbe("/api/v1/namespaces/default/serviceaccounts/default", api_servers(masters)) as probe:
        orchestrate("k8s.rotate.service-account")
    record("rotation", what="service-account switched", probes_ok=probe.ok, failed=len(probe.failed))
    if len(masters) > 1:
        assert probe.failed == [], probe.failed
    new = new_token()
    assert kid(new) != kid(old)
    assert (accepted(old), accepted(new)) == (200, 200)

    orchestrate("k8s.rotate.service-account", {"drop_old": True})
    assert (accepted(old), accepted(new)) == (401, 200)
