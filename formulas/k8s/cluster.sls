{#- salt-run state.orchestrate k8s.cluster -- bring the whole cluster up in dependency order.
    Each step requires the previous one; failhard stops the run at the first failing minion/state, which the
    orchestrate return names. Steps are added as their components land: see README "Status". #}
{%- set tgt = "G@role:master or G@role:worker" %}

sync kubesalt modules:
  salt.function:
    - name: saltutil.sync_all
    - tgt: "{{ tgt }}"
    - tgt_type: compound
    - kwarg:
        refresh: true

validate configuration on every node:
  salt.function:
    - name: k8s.validate
    - tgt: "{{ tgt }}"
    - tgt_type: compound
    - failhard: true
    - require:
      - salt: sync kubesalt modules

converge every node:
  salt.state:
    - tgt: "{{ tgt }}"
    - tgt_type: compound
    - highstate: true
    - failhard: true
    - require:
      - salt: validate configuration on every node
