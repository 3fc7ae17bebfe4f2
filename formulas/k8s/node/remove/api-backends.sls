{#- k8s.node.remove: every node's node-local API balancer (k8s:api_balancer) stops sending to a removed master
    (k8s_op:node), which is still in k8s:nodes while it is removed: its configuration is written without that master
    and reloaded (open connections stay). Delete the node from k8s:nodes afterwards; the next run then writes the same
    configuration. A no-op where there is no balancer, and on the removed node itself. A balancer of your own in front
    of the masters (k8s:apiserver:endpoint) must drop the master's address by your own means. #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- if k8s.cluster.is_node and k8s.api_balancer.enabled and opts.id != op.node %}
{%-   set spec = salt["k8s_conf.api_balancer"](k8s, opts.id, without=[op.node]) %}
{%-   for path, file in spec.files | dictsort %}

API balancer without {{ op.node }}:
  file.managed:
    - name: {{ path }}
    - contents: {{ file.contents | json }}
    - mode: "{{ file.mode }}"
    - user: root
    - group: root
{%-   endfor %}
{%-   if k8s.manage_services %}

API balancer reloaded without {{ op.node }}:
  module.run:
    - service.reload:
      - name: {{ spec.unit }}
    - onchanges:
      - file: API balancer without {{ op.node }}
{%-   endif %}
{%- else %}

API backends without {{ op.node }}:
  test.nop:
    - name: "{{ opts.id }}: no node-local API balancer to update (k8s:api_balancer off, not a node, or the node removed)"
{%- endif %}
