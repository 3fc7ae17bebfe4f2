{#- salt-run state.orchestrate k8s.upgrade [test=True] [pillar='{"drain_timeout": 600}']
    Rolling upgrade to the versions in the pillar (k8s:versions; README "Upgrading"):

    sync -> validate -> preflight on the CA minion (k8s_upgrade.preflight: refuses what the version-skew policy
    forbids and a cluster that is not healthy, naming node and versions; its comment is the plan) -> an etcd
    snapshot on the CA minion (only when anything is to be upgraded) -> etcd members one at a time, quorum checked
    after each (the k8s.cluster steps) -> the control plane one master at a time, each API server's /readyz before
    the next -> nodes in batches of k8s:upgrade:node_batch, masters first: marked, cordoned and drained
    (PodDisruptionBudgets honoured) -> k8s.node on them (runtime, CNI plugins, kubelet, kube-proxy at the new
    versions) -> Ready at the target kubelet, uncordoned, recorded on the Node object.

    A node already at the target is skipped; a node an interrupted run left cordoned is finished; a second run
    changes nothing. test=True shows the plan and every pending change and changes nothing. #}
{%- import "k8s/orchestrate.jinja" as o with context %}
{%- import_yaml "k8s/defaults.yaml" as defaults %}
{#- The nodes, asked of the masters at render time: the keys of their k8s:nodes pillar (the minion ids of the
    inventory; Salt masks pillar values in pillar.get's output, "**********", but not the keys, and no value of the k8s
    pillar reaches the job cache). The role grain only puts the masters first; each step decides from its own pillar
    what to do (k8s.upgrade.begin/finish act only on the masters and workers of k8s:nodes). The batch size is read
    like k8s.cluster's k8s:worker_batch: the master's own pillar, else defaults.yaml; the nodes validate theirs. #}
{%- set ids = [] %}
{%- for answer in salt["saltutil.cmd"]("G@role:master", "pillar.get", arg=["k8s:nodes"], tgt_type="compound").values() %}
{%-   for id in (answer.get("ret") if answer.get("ret") is mapping else {}) | sort %}
{%-     if id not in ids %}{% do ids.append(id) %}{% endif %}
{%-   endfor %}
{%- endfor %}
{%- if not ids %}
{{ raise("k8s.upgrade: no master answered with the k8s:nodes pillar (is a minion with the role:master grain up?)") }}
{%- endif %}
{%- set masters = salt["saltutil.cmd"]("G@role:master", "test.ping", tgt_type="compound").keys() | list %}
{%- set nodes = (ids | select("in", masters) | list) + (ids | reject("in", masters) | list) %}
{%- set batch = salt["pillar.get"]("k8s:upgrade:node_batch", defaults.k8s.upgrade.node_batch) | int %}
{%- set drain_timeout = salt["pillar.get"]("drain_timeout", none) %}

{{ o.sync(o.all_hosts) }}

upgrade preflight and plan:
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls: k8s.upgrade.preflight
    - failhard: true
    - require:
      - salt: validate configuration on every node

etcd snapshot before the upgrade:
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls: k8s.upgrade.snapshot
    - failhard: true
    - require:
      - salt: upgrade preflight and plan

{{ o.etcd_rolling("etcd snapshot before the upgrade") }}

{{ o.control_plane("etcd members restarted one at a time") }}
{%- set previous = namespace(step="control plane one master at a time") %}
{%- for start in range(0, nodes | length, batch) %}
{%-   set group = nodes[start:start + batch] %}
{%-   set op = {"k8s_op": {"nodes": group}} %}
{%-   if drain_timeout is not none %}{% do op.k8s_op.update({"drain_timeout": drain_timeout}) %}{% endif %}
{%-   set label = group | join(", ") %}

{{ label }} marked, cordoned and drained for the upgrade:
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls: k8s.upgrade.begin
    - pillar: {{ op | json }}
    - failhard: true
    - require:
      - salt: {{ previous.step }}

{{ label }} runtime, kubelet and kube-proxy upgraded:
  salt.state:
    - tgt: {{ group | join(",") | json }}
    - tgt_type: list
    - sls: k8s.upgrade.node
    - pillar: {{ op | json }}
    - failhard: true
    - require:
      - salt: "{{ label }} marked, cordoned and drained for the upgrade"

{{ label }} Ready and uncordoned:
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls: k8s.upgrade.finish
    - pillar: {{ op | json }}
    - failhard: true
    - require:
      - salt: "{{ label }} runtime, kubelet and kube-proxy upgraded"
{%-   set previous.step = label ~ " Ready and uncordoned" %}
{%- endfor %}
