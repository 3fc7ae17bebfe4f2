{#- Control-plane node (grain role:master). Components are added as they land: see README "Status". #}
include:
  - k8s.common
  - k8s.pki
  - k8s.etcd
