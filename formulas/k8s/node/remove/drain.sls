{#- k8s.node.remove, on the CA minion (a no-op elsewhere): cordon and drain the node k8s_op:node names. The CA minion
    itself is refused: it holds the CA keys and the admin credential (README: "Replace a failed master"). #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- if not op.node %}
{{ raise("k8s.node.remove needs the node: pillar='{\"k8s_op\": {\"node\": \"worker02\"}}' (the orchestration passes it)") }}
{%- endif %}
{%- if k8s.cluster.is_ca and k8s.manage_services %}
{%-   if op.node == k8s.cluster.ca_minion %}
{{ raise("k8s_op:node: '" ~ op.node ~ "' is the CA minion (k8s:pki:ca_minion); move the CA first (README: Replace a failed master)") }}
{%-   endif %}

{{ op.node }} drained:
  k8s_kube.node_drained:
    - name: {{ op.node }}
    - config: {{ k8s | json }}
    - timeout: {{ op.drain_timeout or k8s.timeouts.drain }}
{%- else %}

nodes are drained from the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
