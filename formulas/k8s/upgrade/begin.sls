{#- k8s.upgrade, on the CA minion (a no-op elsewhere): each node of k8s_op:nodes (a master or worker of k8s:nodes)
    that still has to be upgraded (k8s_upgrade.begin_node decides, from its Node object) is
    marked (annotation kubesalt.io/upgrade-cordoned), cordoned and drained -- the Eviction API, PodDisruptionBudgets
    honoured, giving up after k8s_op:drain_timeout (default k8s:timeouts:drain) naming the pods still there. #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- if not op.nodes %}
{{ raise("k8s.upgrade.begin needs the nodes: pillar='{\"k8s_op\": {\"nodes\": [\"worker01\"]}}' (the orchestration passes them)") }}
{%- endif %}
{%- if k8s.cluster.is_ca and k8s.manage_services %}
{%-   set pending = op.nodes | select("in", k8s.cluster.nodes) | list %}
{%-   for node in pending %}

{{ node }} marked, cordoned and drained for the upgrade:
  k8s_upgrade.node_started:
    - name: {{ node }}
    - config: {{ k8s | json }}
    - timeout: {{ op.drain_timeout or k8s.timeouts.drain }}
{%-   endfor %}
{%-   if not pending %}

no node of this batch to upgrade:
  test.nop:
    - name: "{{ op.nodes | join(', ') }}"
{%-   endif %}
{%- else %}

nodes are cordoned from the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
