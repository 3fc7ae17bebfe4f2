{#- salt-run state.orchestrate k8s.etcd.member [pillar='{"replace": "<member>"}']
    Converges etcd's membership on a live cluster to k8s:nodes, one member at a time, never losing quorum:

    sync -> validate -> (replace: the dead member is removed, refused when it is healthy) -> k8s.etcd on every etcd
    host one at a time (a member k8s:nodes lists but the cluster lacks joins as a learner, starts with
    --initial-cluster-state existing and is promoted; running members change nothing) -> members the cluster has but
    k8s:nodes does not list are removed, one at a time, each refused when it would lose quorum -> their nodes retire
    them (etcd stopped and disabled, data directory moved aside). With replace, the replaced node's old data
    directory (if its disk survived) is moved aside before it joins again.

    Grow: add the etcd role to nodes in k8s:nodes (they need their certificates first: k8s.pki, which this runs), then
    run it. Shrink: take the role away, then run it. Replace a member whose disk is gone (same minion id): reinstall
    the node, then run it with pillar replace=<id>; with a new id: add the new node, remove the old one from
    k8s:nodes, run it. The API servers' --etcd-servers follow on the next k8s.cluster (or k8s.control-plane). #}
{%- import "k8s/orchestrate.jinja" as o with context %}
{%- set replace = salt["pillar.get"]("replace", "") %}
{%- set op = {"k8s_op": {"replace": o.node_id(replace, "replace") | trim}} if replace else {} %}

{{ o.sync(o.etcd_hosts) }}

etcd certificates of every member:
  salt.state:
    - tgt: "{{ o.etcd_hosts }}"
    - tgt_type: compound
    - sls: k8s.pki
    - failhard: true
    - require:
      - salt: validate configuration on every node
{%- if replace %}

dead etcd member {{ replace }} removed for its replacement:
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls: k8s.etcd.membership
    - pillar: {{ op | json }}
    - failhard: true
    - require:
      - salt: etcd certificates of every member

old data of {{ replace }} moved aside:
  salt.state:
    - tgt: "{{ replace }}"
    - sls: k8s.etcd.retire
    - pillar: {{ {"k8s_op": {"node": op.k8s_op.replace}} | json }}
    - failhard: true
    - require:
      - salt: dead etcd member {{ replace }} removed for its replacement
{%- endif %}

etcd members join one at a time:
  salt.state:
    - tgt: "{{ o.etcd_hosts }}"
    - tgt_type: compound
    - sls: k8s.etcd
    - batch: 1
    - failhard: true
    - require:
      - salt: {{ ("old data of " ~ replace ~ " moved aside") if replace else "etcd certificates of every member" }}

etcd members not in k8s:nodes removed:
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls: k8s.etcd.membership
    - failhard: true
    - require:
      - salt: etcd members join one at a time

removed etcd members retired:
  salt.state:
    - tgt: "{{ o.etcd_hosts }}"
    - tgt_type: compound
    - sls: k8s.etcd.retire
    - failhard: true
    - require:
      - salt: etcd members not in k8s:nodes removed
