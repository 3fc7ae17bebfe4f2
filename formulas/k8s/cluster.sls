{#- salt-run state.orchestrate k8s.cluster -- the cluster in dependency order.
    Every step requires the previous one and has failhard: the first failing minion/state stops the run, and the
    orchestrate return names it. Steps target nodes by role grain only to choose where to look; each SLS decides
    from the k8s:nodes pillar whether it has anything to do there (CA, etcd membership), so a grain can never make a
    node a CA or an etcd member.

    sync -> validate -> CAs -> node certificates -> etcd members (parallel, restarts deferred) -> etcd restarts one
    at a time with a quorum wait -> control plane one master at a time (each waits for
    its /readyz) -> cluster objects and add-ons (one state run on the CA minion; the add-ons' pods are scheduled once
    nodes are Ready, as with kubeadm) -> nodes (batch k8s:worker_batch; each registers and waits until Ready) ->
    smoke checks (the API through every node's balancer, every node Ready, CoreDNS available).

    Progress: Salt fires salt/run/<jid>/args when a step starts (its target); as every step requires the one
    before, a step has ended when the next one starts or the run returns. `salt-run k8s.follow` prints that as it
    happens; `salt-run k8s.converge` runs this orchestration, prints it, fires
    kubesalt/orchestrate/<jid>/step/<step>/start|end and ends with a timing table (README "Operating the
    cluster"). (fire_event on a step would not help: Salt never fires it inside an orchestration, whose master
    options say `local`.) #}
{%- import "k8s/orchestrate.jinja" as o with context %}
{%- set nodes, etcd_hosts, node_hosts = o.all_hosts, o.etcd_hosts, o.node_hosts %}
{#- Batch size of the steps whose nodes call the CA minion through peer publish: k8s:worker_batch from the master's own
    pillar when it has the k8s pillar, else the default in defaults.yaml (see there). Nodes validate the value they
    see in the validation step. #}
{%- import_yaml "k8s/defaults.yaml" as defaults %}
{%- set batch = salt["pillar.get"]("k8s:worker_batch", defaults.k8s.worker_batch) %}
{#- Peer publish stalls 30 s at random unless the salt-master gives the `publish` command a worker pool of its own
    (README, "Setting up the salt-master"). This renders on the master, so opts are the master's: say so up front. #}
{%- set pool_check = namespace(ok=false) %}
{%- for pool in (opts.get("worker_pools") or {}).values() %}
{%-   if "publish" in (pool.get("commands") or []) %}{% set pool_check.ok = true %}{% endif %}
{%- endfor %}
{%- if not pool_check.ok %}

salt-master worker pools:
  test.configurable_test_state:
    - changes: false
    - result: true
    - comment: checked the salt-master's worker_pools
    - warnings: >-
        This salt-master has no worker pool of its own for the `publish` command: a node's peer publish (certificate
        signing, node registration) can then wait publish_timeout (30 s) on the very master worker that handles it.
        Add the README's worker_pools block to the master config.
{%- endif %}

{{ o.sync(nodes) }}

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
    - batch: {{ batch | json }}
    - failhard: true
    - require:
      - salt: certificate authorities on the CA minion

{{ o.etcd_rolling("node certificates everywhere") }}

{{ o.control_plane("etcd members restarted one at a time") }}

cluster objects and add-ons:
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls:
      - k8s.objects
      - k8s.addons
    - failhard: true
    - require:
      - salt: control plane one master at a time

nodes (masters and workers):
  salt.state:
    - tgt: "{{ node_hosts }}"
    - tgt_type: compound
    - sls: k8s.node
    - batch: {{ batch | json }}
    - failhard: true
    - require:
      - salt: cluster objects and add-ons

smoke checks:
  salt.state:
    - tgt: "{{ node_hosts }}"
    - tgt_type: compound
    - sls: k8s.smoke
    - failhard: true
    - require:
      - salt: nodes (masters and workers)
