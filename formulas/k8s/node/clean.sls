{#- Removes the node components (kubelet first, then kube-proxy, the pod network and the runtime). #}
include:
  - k8s.kubelet.clean
  - k8s.kube-proxy.clean
  - k8s.network.clean
  - k8s.runtime.clean
