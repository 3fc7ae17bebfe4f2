{#- The cluster side of a membership change, on the CA minion (a no-op elsewhere); k8s.etcd.member and
    k8s.node.remove run it. Removes, one at a time, each refused -- changing nothing -- when it would lose quorum:
    - with k8s_op:node (k8s.node.remove): that node's member only;
    - with k8s_op:replace: the member to replace only (and only when it is down); its node then joins again as a new
      member with an empty data directory (k8s.etcd);
    - else every member whose peer URL k8s:nodes does not list as an etcd member, once every member k8s:nodes lists
      votes (waiting for joins still in progress; Salt's batch can report a node's step done while it still runs).
    Its etcd must then stop and its data directory go aside: k8s.etcd.retire on that node. #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- if k8s.cluster.is_ca and k8s.manage_services %}
{%-   if op.node or op.replace %}

etcd member {{ op.node or op.replace }} removed:
  k8s_etcd.member_absent:
    - name: {{ op.node or op.replace }}
    - only_unhealthy: {{ not op.node }}
{%-   else %}

every etcd member of k8s:nodes votes:
  k8s_etcd.members_voting:
    - name: etcd membership
    - config: {{ k8s | json }}
    - wait: {{ k8s.etcd.health_timeout }}

etcd members not in k8s:nodes removed:
  k8s_etcd.members_match:
    - name: etcd membership
    - config: {{ k8s | json }}
    - require:
      - k8s_etcd: every etcd member of k8s:nodes votes
{%-   endif %}
{%- else %}

etcd membership is changed from the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
