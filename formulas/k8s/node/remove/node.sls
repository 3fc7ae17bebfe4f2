{#- k8s.node.remove, on the node being removed (k8s_op:node): its components stopped and the files kubesalt wrote
    removed -- k8s.control-plane.clean on a master, k8s.node.clean (kubelet, kube-proxy, pod network, runtime), the
    admin kubeconfig -- and its etcd member retired (k8s.etcd.retire: only once the member has left the cluster;
    data directory moved aside). Certificates and keys stay (k8s.pki.clean removes them); state under
    /var/lib/kubelet and /var/lib/containerd stays. #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- if op.node == opts.id %}

include:
{%-   if k8s.cluster.is_master %}
  - k8s.control-plane.clean
  - k8s.admin.clean
{%-   endif %}
  - k8s.node.clean
  - k8s.etcd.retire
{%- else %}

{{ opts.id }} is not the node being removed:
  test.nop:
    - name: "{{ op.node }}"
{%- endif %}
