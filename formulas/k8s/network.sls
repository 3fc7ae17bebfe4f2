{#- Pod network of a Kubernetes node, k8s:network:mode
    - routes (default, Kubernetes the Hard Way): a CNI bridge + host-local config for this node's pod subnet and a
      oneshot unit `kubesalt-pod-routes` with a route to every other node's pod subnet (from the pillar inventory).
    - flannel: flanneld with its kube subnet manager (this node's subnet from node.spec.podCIDR, through the API with
      its own `flannel` credential; no etcd access) and 10-flannel.conflist; started before containerd and the
      kubelet. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- set me = opts.id %}
{%- if k8s.cluster.is_node %}
{%-   set spec = salt["k8s_conf.network"](k8s, me) %}

include:
  - k8s.common
  - k8s.pki
{%-   if k8s.network.mode == "flannel" %}
{{ m.binary(k8s, "flanneld") }}
{{ m.binary(k8s, "flannel-cni-plugin") }}
{{ m.service(k8s, spec, watch=["flanneld binary"]) }}
{%-   else %}
{{ m.service(k8s, spec) }}
{%-   endif %}
{%- else %}

pod network not on this node:
  test.nop:
    - name: "{{ me }} is neither a master nor a worker in k8s:nodes"
{%- endif %}
