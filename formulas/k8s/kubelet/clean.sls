{#- Removes the kubelet (service, unit, KubeletConfiguration, kubeconfig, binary). /var/lib/kubelet is kept. Delete
    the Node object with the admin kubeconfig if the node leaves the cluster for good. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- if k8s.cluster.is_node %}
{{ m.clean(k8s, salt["k8s_conf.kubelet"](k8s, opts.id), ["kubelet"]) }}
{%- else %}

no kubelet on this node:
  test.nop
{%- endif %}
