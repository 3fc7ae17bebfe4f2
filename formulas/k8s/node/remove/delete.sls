{#- k8s.node.remove, on the CA minion (a no-op elsewhere): delete the Node object of k8s_op:node, after its kubelet
    stopped (else it registers the node again). #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- if k8s.cluster.is_ca and k8s.manage_services and op.node %}

Node {{ op.node }} deleted:
  k8s_kube.node_absent:
    - name: {{ op.node }}
    - config: {{ k8s | json }}
{%- else %}

Node objects are deleted from the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
