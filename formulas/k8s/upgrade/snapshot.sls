{#- k8s.upgrade, on the CA minion (a no-op elsewhere): a fresh etcd snapshot (verified, kept with the others in
    k8s:etcd:backup:dir, the newest `keep` kept) before anything is upgraded -- only when the plan has anything to
    upgrade (k8s_upgrade.snapshot_taken), so a run with nothing to do changes nothing. Restore it with k8s.etcd.restore. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- if k8s.cluster.is_ca and k8s.manage_services and k8s.cluster.etcd_members %}
{%-   set backup = k8s.etcd.backup %}

etcd backup directory for the upgrade:
  file.directory:
    - name: {{ backup.dir }}
    - user: root
    - group: root
    - mode: "0700"
    - makedirs: true

etcd snapshot before the upgrade:
  k8s_upgrade.snapshot_taken:
    - name: {{ backup.dir }}
    - keep: {{ backup.keep }}
    - copy_to: {{ backup.copy_to | json }}
    - endpoints: {{ k8s.cluster.etcd_client_urls | json }}
    - config: {{ k8s | json }}
    - require:
      - file: etcd backup directory for the upgrade
{%- else %}

no etcd snapshot needed here:
  test.nop:
    - name: "{{ opts.id }}: not the CA minion, or nothing to upgrade"
{%- endif %}
