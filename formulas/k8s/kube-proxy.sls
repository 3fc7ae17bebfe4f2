{#- kube-proxy of a Kubernetes node: KubeProxyConfiguration from data (k8s_conf.kube_proxy_config), mode iptables,
    ipvs or nftables, its own client certificate. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- set me = opts.id %}
{%- if k8s.cluster.is_node %}
{%-   set spec = salt["k8s_conf.kube_proxy"](k8s, me) %}

include:
  - k8s.pki
  - k8s.runtime
{{ m.binary(k8s, "kube-proxy") }}
{{ m.service(k8s, spec, watch=["kube-proxy binary"]) }}
{%- else %}

kube-proxy not on this node:
  test.nop:
    - name: "{{ me }} is neither a master nor a worker in k8s:nodes"
{%- endif %}
