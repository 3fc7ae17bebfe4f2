{#- kubelet of a Kubernetes node (masters are nodes too; the master taint keeps ordinary pods off them):
    KubeletConfiguration from data (k8s_conf.kubelet_config), its own client and serving certificate, node name =
    minion id. Needs the container runtime and the pod network. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- set me = opts.id %}
{%- if k8s.cluster.is_node %}
{%-   set spec = salt["k8s_conf.kubelet"](k8s, me) %}

include:
  - k8s.pki
  - k8s.runtime
  - k8s.network
{{ m.binary(k8s, "kubelet") }}

kubelet directory:
  file.directory:
    - name: {{ k8s.paths.kubelet_dir }}
    - mode: "0700"
    - makedirs: true
{%-   set network = "flanneld service" if k8s.network.mode == "flannel" else "kubesalt-pod-routes service" %}
{{ m.service(k8s, spec, watch=["kubelet binary"], require=["containerd service", "kubelet directory", network]) }}
{%- else %}

kubelet not on this node:
  test.nop:
    - name: "{{ me }} is neither a master nor a worker in k8s:nodes"
{%- endif %}
