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
{#- The inventory (roles only) and the node batch, asked of the masters: the salt-master's own pillar need not hold
    the k8s pillar. Only these two keys are read, so no secret of the k8s pillar reaches the job cache. #}
{%- set asked = namespace(nodes={}, batch=none) %}
{%- for answer in salt["saltutil.cmd"]("G@role:master", "pillar.get", arg=["k8s:nodes"], tgt_type="compound").values() %}
{%-   if answer.get("ret") is mapping %}{% set asked.nodes = answer.ret %}{% endif %}
{%- endfor %}
{%- for answer in salt["saltutil.cmd"]("G@role:master", "pillar.get", arg=["k8s:upgrade:node_batch"], tgt_type="compound").values() %}
{%-   if answer.get("ret") %}{% set asked.batch = answer.ret %}{% endif %}
{%- endfor %}
{%- if not asked.nodes %}
{{ raise("k8s.upgrade: no master answered with the k8s:nodes pillar (is a minion with the role:master grain up?)") }}
{%- endif %}
{%- set batch = (asked.batch or defaults.k8s.upgrade.node_batch) | int %}
{%- set by_role = {"master": [], "worker": []} %}
{%- for id, node in asked.nodes | dictsort %}
{%-   set roles = node.roles if node is mapping and node.roles is sequence else [] %}
{%-   if "master" in roles %}{% do by_role.master.append(id) %}{% elif "worker" in roles %}{% do by_role.worker.append(id) %}{% endif %}
{%- endfor %}
{%- set nodes = by_role.master + by_role.worker %}
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
