{#- Removes the node components (kubelet first, then kube-proxy, the pod network, the runtime and the node-local API
    balancer). #}
include:
  - k8s.kubelet.clean
  - k8s.kube-proxy.clean
  - k8s.network.clean
  - k8s.runtime.clean
  - k8s.api-balancer.clean
