{#- Removes the node-local API load balancer (service, unit, configuration). The haproxy package stays: it is the
    distribution's and may serve other things on this host. Turn k8s:api_balancer:enabled off and re-run the node
    states first, or the node's daemons lose the API. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- if k8s.cluster.is_node %}
{{ m.clean(k8s, salt["k8s_conf.api_balancer"](k8s, opts.id)) }}
{%- else %}

no api balancer on this node:
  test.nop
{%- endif %}
