{#- Control plane of a master: kube-apiserver, kube-controller-manager and kube-scheduler (units and config from
    k8s_conf), kubectl, then a wait until this API server answers /readyz. The k8s.cluster orchestration applies it
    to one master at a time. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- set me = opts.id %}
{%- if k8s.cluster.is_master %}

include:
  - k8s.common
  - k8s.pki
  - k8s.api-balancer
{{ m.binary(k8s, "kubectl") }}
{%-   for component in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] %}
{%-     set spec = salt["k8s_conf." ~ component.replace("kube-", "").replace("-", "_")](k8s, me) %}
{{ m.binary(k8s, component) }}
{{ m.service(k8s, spec, watch=[component ~ " binary"]) }}
{%-   endfor %}
{%-   if k8s.manage_services %}

kube-apiserver answers readyz:
  k8s_kube.api_ready:
    - config: {{ k8s | json }}
    - timeout: {{ k8s.timeouts.apiserver_ready }}
    - require:
      - service: kube-apiserver service
{%-   endif %}
{%- else %}

control plane not on this node:
  test.nop:
    - name: "{{ me }} is not a master in k8s:nodes"
{%- endif %}
