{#- k8s.etcd.restore: on the seed, its data directory becomes the restore of the snapshot as a one-member cluster; on
    every other etcd member the data directory is moved aside so that it joins the restored cluster as a new member.
    Old data directories go to <data dir>.before-restore-<time>. Each member records its step in
    <data dir>.restore-pending (k8s.cluster.etcd_restore_marker), so a re-run resumes without doing it again. #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- if not op.snapshot %}
{{ raise("k8s.etcd.restore needs the snapshot: pillar k8s_op:snapshot (the orchestration passes it)") }}
{%- endif %}
{%- if k8s.cluster.is_etcd and k8s.manage_services %}
{%-   set seed = salt["k8s_etcd.restore_seed"](k8s, op.seed) %}
{%-   set spec = salt["k8s_conf.etcd"](k8s, opts.id) %}
{%-   if opts.id == seed %}

etcd data restored from the snapshot:
  k8s_etcd.data_restored:
    - name: {{ k8s.paths.etcd_data_dir }}
    - snapshot: {{ op.snapshot | json }}
    - directory: {{ k8s.etcd.backup.dir }}
    - member: {{ opts.id }}
    - peer_url: {{ k8s.cluster.etcd_peer_url }}
    - token: {{ k8s.cluster_name }}
    - marker: {{ k8s.cluster.etcd_restore_marker }}
    - tool_dirs: {{ [spec.exec.rsplit("/", 1)[0]] | json }}
{%-   else %}

etcd data moved aside for the restore:
  k8s_etcd.data_cleared:
    - name: {{ k8s.paths.etcd_data_dir }}
    - marker: {{ k8s.cluster.etcd_restore_marker }}
    - restore_id: {{ op.snapshot | json }}
{%-   endif %}
{%- else %}

no etcd data on {{ opts.id }}:
  test.nop
{%- endif %}
