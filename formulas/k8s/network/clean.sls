{#- Removes the pod network of this node: the CNI config and the routes unit (mode routes; the routes themselves go
    at the next reboot) or flanneld and its CNI plugin (mode flannel). #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- if k8s.cluster.is_node %}
{{ m.clean(k8s, salt["k8s_conf.network"](k8s, opts.id),
           ["flanneld", "flannel-cni-plugin"] if k8s.network.mode == "flannel" else []) }}
{%- else %}

no pod network on this node:
  test.nop
{%- endif %}
