{#- Removes the container runtime: containerd (service, unit, config, registry hosts), runc, crictl, the CNI plugins.
    Images and containers in /var/lib/containerd are kept; the kernel settings stay. Run k8s.kubelet.clean first. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- if opts.id in k8s.cluster.masters or opts.id in k8s.cluster.workers %}
{%-   set bin = k8s.paths.bin_dir %}
{%-   set binaries = [] if k8s.container_runtime.install == "package" else
        [bin ~ "/containerd", bin ~ "/containerd-shim-runc-v2", bin ~ "/ctr", bin ~ "/runc"]
        + [k8s.paths.cni_bin_dir ~ "/bridge", k8s.paths.cni_bin_dir ~ "/host-local", k8s.paths.cni_bin_dir ~ "/loopback",
           k8s.paths.cni_bin_dir ~ "/portmap"] %}
{%-   if k8s.container_runtime.crictl %}{% do binaries.extend([bin ~ "/crictl", k8s.fs_root ~ "/etc/crictl.yaml"]) %}{% endif %}
{{ m.clean(k8s, salt["k8s_conf.containerd"](k8s, opts.id), binaries) }}
{%- else %}

no container runtime on this node:
  test.nop
{%- endif %}
