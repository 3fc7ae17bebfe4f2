{#- Reactor: converge a minion when it (re)starts. Master config:
      reactor:
        - 'salt/minion/*/start':
          - salt://k8s/reactor/converge.sls
    A minion can fire an event with any tag and data, so neither the tag nor the event's `id` proves which minion
    started. The reactor therefore only asks the minion named in the tag (salt/minion/<id>/start) to converge, and that
    minion runs highstate only if its own salt-minion started within the last 10 minutes (k8s.boot_converge): a
    forged start event for another node converges nobody. What a node becomes still comes from the k8s:nodes pillar.
    The simpler alternative is the minion option `startup_states: highstate` (see README "Node boot"). #}
{%- set parts = tag.split("/") %}
{%- if parts | length == 4 and parts[:2] == ["salt", "minion"] and parts[3] == "start"
      and parts[2] | regex_match("^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?)\\Z") %}

converge {{ parts[2] }} on start:
  local.k8s.boot_converge:
    - tgt: {{ parts[2] | json }}
    - kwarg:
        max_age: 600
{%- endif %}
