{#- Node-local API load balancer (k8s:api_balancer, on by default): haproxy from the distribution as the unit
    kubesalt-api-balancer, listening on 127.0.0.1:<k8s:api_balancer:port> and passing TCP through to every master
    whose API server answers /readyz (k8s_conf.api_balancer_config). The node's daemons reach the API through it
    (kubesalt.topology.daemon_api_url). A change of masters or of the kube-proxy certificate it checks with reloads
    it (open connections stay). k8s.node and k8s.smoke check that the API answers through it (m.balancer_check). A
    no-op when off, and on minions that are not nodes. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- set me = opts.id %}
{%- if k8s.cluster.is_node and k8s.api_balancer.enabled %}
{%-   set spec = salt["k8s_conf.api_balancer"](k8s, me) %}

include:
  - k8s.common
  - k8s.pki
{%-   if k8s.manage_services %}

api balancer package:
  pkg.installed:
    - pkgs: {{ k8s.api_balancer.packages | json }}
    - refresh: false
{%-   endif %}
{{ m.service(k8s, spec, require=["api balancer package"] if k8s.manage_services else []) }}
{%- else %}

api balancer not on this node:
  test.nop:
    - name: "{{ me }}: {{ 'k8s:api_balancer:enabled is false' if k8s.cluster.is_node else 'neither a master nor a worker in k8s:nodes' }}"
{%- endif %}
