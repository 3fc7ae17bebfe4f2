{#- salt-run state.orchestrate k8s.node.remove pillar='{"node": "worker02"}' [drain_timeout: seconds]
    Takes a node out of the cluster, while it is still in k8s:nodes (afterwards, delete it from k8s:nodes):

    sync -> validate -> on the CA minion: the node cordoned and drained (the Eviction API: PodDisruptionBudgets
    honoured; gives up after drain_timeout, default k8s:timeouts:drain, naming the pods still there), and, for an
    etcd member, its member removed (refused when that would lose quorum) -> on the node: its components stopped and
    their files removed (k8s.master.clean / k8s.worker.clean), its etcd retired (data directory moved aside)
    -> the Node object deleted -> every node's node-local API balancer stops sending to it
    (k8s.node.remove.api-backends).

    The node-side step may fail when the node is already gone (its minion does not answer); the Node object is
    deleted all the same. The CA minion cannot be removed this way (README: "Replace a failed master"). The node's
    certificates stay valid until they expire (README: "What a removed node can still do"). #}
{%- import "k8s/orchestrate.jinja" as o with context %}
{%- set node = o.node_id(salt["pillar.get"]("node", ""), "node") | trim %}
{%- set args = {"node": node} %}
{%- set drain_timeout = salt["pillar.get"]("drain_timeout", none) %}
{%- if drain_timeout is not none %}{% do args.update({"drain_timeout": drain_timeout}) %}{% endif %}
{%- set op = {"k8s_op": args} %}

{{ o.sync(o.all_hosts) }}

{{ node }} drained and its etcd member removed:
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls:
      - k8s.node.remove.drain
      - k8s.etcd.membership
    - pillar: {{ op | json }}
    - failhard: true
    - require:
      - salt: validate configuration on every node

{{ node }} components stopped and cleaned:
  salt.state:
    - tgt: "{{ node }}"
    - sls: k8s.node.remove.node
    - pillar: {{ op | json }}
    - require:
      - salt: {{ node }} drained and its etcd member removed

Node {{ node }} deleted:
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls: k8s.node.remove.delete
    - pillar: {{ op | json }}
    - failhard: true
    - require:
      - salt: {{ node }} drained and its etcd member removed

API backends updated on every node:
  salt.state:
    - tgt: "{{ o.all_hosts }}"
    - tgt_type: compound
    - sls: k8s.node.remove.api-backends
    - pillar: {{ op | json }}
    - require:
      - salt: Node {{ node }} deleted
