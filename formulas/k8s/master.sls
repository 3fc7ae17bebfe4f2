{#- Control-plane node (grain role:master; what it really is comes from k8s:nodes): certificates, etcd member (when
    it has the etcd role), kube-apiserver/-controller-manager/-scheduler, the admin kubeconfig (CA minion only),
    cluster objects and add-ons (CA minion only), and the node components (kubelet, kube-proxy, runtime, network)
    with the master taint. `state.highstate` on a master converges all of it. #}
include:
  - k8s.common
  - k8s.pki
  - k8s.etcd
  - k8s.control-plane
  - k8s.admin
  - k8s.objects
  - k8s.node
  - k8s.addons
