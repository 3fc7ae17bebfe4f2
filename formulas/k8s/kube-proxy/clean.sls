{#- Removes kube-proxy (service, unit, KubeProxyConfiguration, kubeconfig, binary). Its iptables rules stay until
    the next reboot (or `kube-proxy --cleanup` before running this). #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- if k8s.cluster.is_node %}
{{ m.clean(k8s, salt["k8s_conf.kube_proxy"](k8s, opts.id), ["kube-proxy"]) }}
{%- else %}

no kube-proxy on this node:
  test.nop
{%- endif %}
