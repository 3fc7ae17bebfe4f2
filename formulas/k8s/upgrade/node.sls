{#- k8s.upgrade, on each node of k8s_op:nodes: k8s.node (container runtime, CNI plugins, kubelet, kube-proxy at the
    pillar's versions; the node waits until it is Ready) -- unless its Node object (read with its own kubelet
    certificate) records that it is upgraded to these versions already. #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- if k8s.cluster.is_node and opts.id in (op.nodes or [])
      and (not k8s.manage_services or salt["k8s_upgrade.nodes_pending"](k8s, [opts.id], identity="kubelet")) %}

include:
  - k8s.node
{%- else %}

{{ opts.id }} needs no node upgrade:
  test.nop:
    - name: "{{ opts.id }}: upgraded already, or not a node of this batch"
{%- endif %}
