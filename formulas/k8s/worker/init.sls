{#- Worker node (grain role:worker): `salt worker01 state.apply k8s.worker` converges one node. Components are
    added as they land: see README "Status". #}
include:
  - k8s.common
  - k8s.pki
