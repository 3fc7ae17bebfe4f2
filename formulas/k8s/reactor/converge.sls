{#- Reactor: converge a minion when it (re)starts. Master config:
      reactor:
        - 'salt/minion/*/start':
          - salt://k8s/reactor/converge.sls
    The event's id is the authenticated minion id; what the node becomes still comes from the k8s:nodes pillar.
    The simpler alternative is the minion option `startup_states: highstate` (see README "Node boot"). #}
converge {{ data["id"] }} on start:
  local.state.highstate:
    - tgt: {{ data["id"] | json }}
