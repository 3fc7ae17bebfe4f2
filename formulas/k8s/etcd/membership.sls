{#- The cluster side of a membership change, on the CA minion (a no-op elsewhere); k8s.etcd.member and
    k8s.node.remove run it. Removes, one at a time, each refused -- changing nothing -- when it would lose quorum:
    - with k8s_op:node (k8s.node.remove): that node's member only;
    - with k8s_op:replace: the member to replace only (and only when it is down); its node then joins again as a new
      member with an empty data directory (k8s.etcd);
    - else every member whose peer URL k8s:nodes does not list as an etcd member.
    Its etcd must then stop and its data directory go aside: k8s.etcd.retire on that node. #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- if k8s.cluster.is_ca and k8s.manage_services %}
{%-   set leaving = [] %}
{%-   if op.node %}
{%-     do leaving.append({"label": op.node, "only_unhealthy": false}) %}
{%-   elif op.replace %}
{%-     do leaving.append({"label": op.replace, "only_unhealthy": true}) %}
{%-   else %}
{%-     for member in salt["k8s_etcd.members_to_remove"](k8s) %}
{%-       do leaving.append({"label": member.label, "only_unhealthy": false}) %}
{%-     endfor %}
{%-   endif %}
{%-   for member in leaving %}

etcd member {{ member.label }} removed:
  k8s_etcd.member_absent:
    - name: {{ member.label }}
    - only_unhealthy: {{ member.only_unhealthy }}
{%-     if not loop.first %}
    - require:
      - k8s_etcd: etcd member {{ leaving[loop.index0 - 1].label }} removed
{%-     endif %}
{%-   else %}

etcd membership matches k8s:nodes:
  test.nop
{%-   endfor %}
{%- else %}

etcd membership is changed from the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
