{#- Stops and removes this etcd member: its unit and, for k8s:etcd:install 'artifact', its binaries. The data directory
    is kept (it is the cluster's state): remove the member from the cluster first, then move the directory aside by
    hand if you mean it. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- if k8s.cluster.is_etcd %}
{{ m.clean(k8s, salt["k8s_conf.etcd"](k8s, opts.id), ["etcd"] if k8s.etcd.install == "artifact" else []) }}
{%- else %}

no etcd member on this node:
  test.nop
{%- endif %}
