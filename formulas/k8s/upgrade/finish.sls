{#- k8s.upgrade, on the CA minion (a no-op elsewhere): each node of k8s_op:nodes that is being upgraded waits until
    it is Ready with the target kubelet (k8s:timeouts:node_ready), is uncordoned (unless it was cordoned by hand
    before), and gets the upgraded versions recorded (annotation kubesalt.io/upgraded-to). #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- if not op.nodes %}
{{ raise("k8s.upgrade.finish needs the nodes: pillar='{\"k8s_op\": {\"nodes\": [\"worker01\"]}}' (the orchestration passes them)") }}
{%- endif %}
{%- if k8s.cluster.is_ca and k8s.manage_services %}
{%-   set pending = op.nodes | select("in", k8s.cluster.nodes) | list %}
{%-   for node in pending %}

{{ node }} Ready at the new versions and uncordoned:
  k8s_upgrade.node_finished:
    - name: {{ node }}
    - config: {{ k8s | json }}
    - timeout: {{ k8s.timeouts.node_ready }}
{%-   endfor %}
{%-   if not pending %}

no node of this batch to finish:
  test.nop:
    - name: "{{ op.nodes | join(', ') }}"
{%-   endif %}
{%- else %}

nodes are uncordoned from the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
