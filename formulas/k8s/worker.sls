{#- Worker node (grain role:worker; what it really is comes from k8s:nodes). `salt worker01 state.apply k8s.worker`
    converges one node -- also a new node the orchestration never saw: its certificates are issued by the CA minion
    under the PKI policy, it registers and the state waits until it is Ready. #}
include:
  - k8s.common
  - k8s.pki
  - k8s.node
