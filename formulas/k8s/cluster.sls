{#- salt-run state.orchestrate k8s.cluster -- the cluster in dependency order.
    Every step requires the previous one and has failhard: the first failing minion/state stops the run, and the
    orchestrate return names it. Steps target nodes by role grain only to choose where to look; each SLS decides
    from the k8s:nodes pillar whether it has anything to do there (CA, etcd membership), so a grain can never make a
    node a CA or an etcd member. Steps still to come (control plane, cluster objects, workers, add-ons, smoke checks)
    land with the component formulas: see README "Status". #}
{%- set nodes = "G@role:master or G@role:worker or G@role:etcd" %}
{%- set etcd_hosts = "G@role:master or G@role:etcd" %}

sync kubesalt modules:
  salt.function:
    - name: saltutil.sync_all
    - tgt: "{{ nodes }}"
    - tgt_type: compound
    - kwarg:
        refresh: true

validate configuration on every node:
  salt.function:
    - name: k8s.validate
    - tgt: "{{ nodes }}"
    - tgt_type: compound
    - failhard: true
    - require:
      - salt: sync kubesalt modules

certificate authorities on the CA minion:
  salt.state:
    - tgt: "{{ nodes }}"
    - tgt_type: compound
    - sls: k8s.pki.ca
    - failhard: true
    - require:
      - salt: validate configuration on every node

node certificates everywhere:
  salt.state:
    - tgt: "{{ nodes }}"
    - tgt_type: compound
    - sls: k8s.pki
    - failhard: true
    - require:
      - salt: certificate authorities on the CA minion

etcd members in parallel:
  salt.state:
    - tgt: "{{ etcd_hosts }}"
    - tgt_type: compound
    - sls: k8s.etcd
    - pillar:
        k8s:
          etcd:
            restart_on_change: false
    - failhard: true
    - require:
      - salt: node certificates everywhere

etcd members restarted one at a time:
  salt.state:
    - tgt: "{{ etcd_hosts }}"
    - tgt_type: compound
    - sls: k8s.etcd.restart
    - batch: 1
    - failhard: true
    - require:
      - salt: etcd members in parallel

pod network configuration in etcd:
  salt.state:
    - tgt: "{{ etcd_hosts }}"
    - tgt_type: compound
    - sls: k8s.etcd.network
    - failhard: true
    - require:
      - salt: etcd members restarted one at a time

converge every node:
  salt.state:
    - tgt: "{{ nodes }}"
    - tgt_type: compound
    - highstate: true
    - failhard: true
    - require:
      - salt: pod network configuration in etcd
