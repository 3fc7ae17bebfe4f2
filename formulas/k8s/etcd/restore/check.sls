{#- k8s.etcd.restore, first step: on the seed, the snapshot (k8s_op:snapshot) must be a sound etcd snapshot
    (k8s_etcd.verify_snapshot); nothing else is touched. Elsewhere a no-op. #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- if not op.snapshot %}
{{ raise("k8s.etcd.restore needs the snapshot: pillar k8s_op:snapshot (the orchestration passes it)") }}
{%- endif %}
{%- set seed = salt["k8s_etcd.restore_seed"](k8s, op.seed) %}
{%- if opts.id == seed %}

etcd snapshot to restore is sound:
  k8s_etcd.snapshot_sound:
    - name: {{ op.snapshot | json }}
    - directory: {{ k8s.etcd.backup.dir }}
{%- else %}

{{ opts.id }} is not the seed of the restore:
  test.nop:
    - name: "{{ seed }}"
{%- endif %}
