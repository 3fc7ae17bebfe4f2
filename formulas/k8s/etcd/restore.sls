{#- salt-run state.orchestrate k8s.etcd.restore pillar='{"snapshot": "<path on the seed>|latest", "seed": "<member>"}'
    Disaster recovery: the cluster's state back to a snapshot (k8s_etcd.backup / k8s.etcd.backup).

    sync -> validate -> the snapshot checked on the seed (nothing is stopped if it is not sound) -> control plane
    and etcd stopped everywhere -> the seed's data directory restored from the snapshot as a one-member cluster,
    every other member's data directory moved aside (never deleted) -> the restored member started, quorum wait ->
    every other member joins it one at a time (a learner, then promoted: k8s.etcd) -> control plane started one
    master at a time (each waits for /readyz) -> restore markers cleared -> smoke checks (every node Ready).

    The snapshot must be a file on the seed only (default seed: the CA minion if it is an etcd member, else the
    first etcd member; pillar "seed" picks another); "latest" is the newest in the seed's k8s:etcd:backup:dir. It is
    never copied between nodes: the other members receive its data from the restored member over etcd's own mTLS
    peer channel. Interrupted, the same command resumes: each member's step is recorded in
    <data dir>.restore-pending until the end. #}
{%- import "k8s/orchestrate.jinja" as o with context %}
{%- set snapshot = salt["pillar.get"]("snapshot", "") %}
{%- if not snapshot %}
{{ raise("orchestration pillar 'snapshot' is missing: salt-run state.orchestrate k8s.etcd.restore pillar='{\"snapshot\": \"latest\"}' (or the snapshot's path on the seed)") }}
{%- endif %}
{%- set seed = salt["pillar.get"]("seed", "") %}
{%- set args = {"snapshot": snapshot} %}
{%- if seed %}{% do args.update({"seed": o.node_id(seed, "seed") | trim}) %}{% endif %}
{%- set op = {"k8s_op": args} %}
{%- set steps = [
      ("snapshot checked on the seed", o.etcd_hosts, "k8s.etcd.restore.check", None),
      ("control plane and etcd stopped", o.etcd_hosts, "k8s.etcd.restore.stop", None),
      ("seed restored, other data directories moved aside", o.etcd_hosts, "k8s.etcd.restore.data", None),
      ("restored members started", o.etcd_hosts, "k8s.etcd.restore.start", None),
      ("other members join one at a time", o.etcd_hosts, "k8s.etcd", 1),
      ("control plane started one master at a time", "G@role:master", "k8s.control-plane", 1),
      ("restore markers cleared", o.etcd_hosts, "k8s.etcd.restore.done", None),
      ("every node Ready", "G@role:master", "k8s.smoke", None),
    ] %}

{{ o.sync(o.all_hosts) }}
{%- for name, tgt, sls, batch in steps %}

{{ name }}:
  salt.state:
    - tgt: "{{ tgt }}"
    - tgt_type: compound
    - sls: {{ sls }}
    - pillar: {{ op | json }}
{%-   if batch %}
    - batch: {{ batch }}
{%-   endif %}
    - failhard: true
    - require:
      - salt: {{ loop.previtem[0] if not loop.first else "validate configuration on every node" }}
{%- endfor %}
