{#- k8s.etcd.restore, first step: on the seed, the snapshot (k8s_op:snapshot) must be a sound etcd snapshot
    (k8s_etcd.verify_snapshot); nothing else is touched. Elsewhere a no-op. #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- set seed = salt["k8s_etcd.restore_seed"](k8s, op.seed) %}
{%- if opts.id == seed %}
{%-   set path = salt["k8s_etcd.resolve_snapshot"](op.snapshot, k8s.etcd.backup.dir) %}
{%-   set facts = salt["k8s_etcd.verify_snapshot"](path) %}

etcd snapshot {{ path }} is sound:
  test.succeed_without_changes:
    - name: "revision {{ facts.revision }}, {{ facts.size }} bytes, sha256 {{ facts.sha256 }}, {{ facts.secrets }} Secret revisions, all encrypted"
{%- else %}

{{ opts.id }} is not the seed of the restore:
  test.nop:
    - name: "{{ seed }}"
{%- endif %}
