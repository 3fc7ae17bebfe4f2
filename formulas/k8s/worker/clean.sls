{#- Removes the node components from this worker (certificates stay: k8s.pki.clean). #}
include:
  - k8s.node.clean
