{#- k8s.node.remove: HOOK for a node-local API load balancer -- when kubesalt has one, this SLS rewrites its backend
    list on every node so that it no longer names a removed master (k8s_op:node). kubesalt has no such balancer yet
    (k8s:apiserver:endpoint points at an external one, or at the first master), so there is nothing to update: a
    balancer you run yourself must drop the removed master's address by your own means. #}
{%- from "k8s/map.jinja" import op with context %}

API backends without {{ op.node }}:
  test.nop:
    - name: "no node-local API balancer is managed by kubesalt: nothing to update for {{ op.node }}"
