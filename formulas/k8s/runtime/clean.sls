{#- Removes the container runtime: containerd (service, unit, config, registry hosts), runc, crictl, the CNI plugins.
    Images and containers in /var/lib/containerd are kept; the kernel settings stay. Run k8s.kubelet.clean first. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- if k8s.cluster.is_node %}
{%-   set components = [] if k8s.container_runtime.install == "package" else ["containerd", "runc", "cni-plugins"] %}
{%-   set paths = [] %}
{%-   if k8s.container_runtime.crictl %}{% do components.append("crictl") %}{% do paths.append(k8s.fs_root ~ "/etc/crictl.yaml") %}{% endif %}
{{ m.clean(k8s, salt["k8s_conf.containerd"](k8s, opts.id), components, paths) }}
{%- else %}

no container runtime on this node:
  test.nop
{%- endif %}
