{#- Snapshots of this etcd member (only on nodes with the etcd role; a no-op elsewhere), k8s:etcd:backup:
    - the backup directory (0700), and a snapshot now unless the newest is younger than max_age (taken from this
      member's own client URL, checked before it is kept, the newest `keep` kept, copied to copy_to when set);
    - the timer: a oneshot unit running `salt-call --local k8s_etcd.backup` with every argument on its command line
      (no master, no pillar needed: backups go on while the salt-master is down) at `schedule`. An empty schedule
      stops the timer and removes both units. k8s_conf.etcd_backup builds both.
    Copy a snapshot off the member: copy_to (a mounted path), or `salt <member> k8s_etcd.push_snapshot` (the
    salt-master's file_recv). #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- if k8s.cluster.is_etcd %}
{%-   set backup = k8s.etcd.backup %}
{%-   set spec = salt["k8s_conf.etcd_backup"](k8s, opts.id, salt["cmd.which"]("salt-call") or "/usr/bin/salt-call") %}
{%-   set units = {"service": k8s.paths.unit_dir ~ "/" ~ spec.unit ~ ".service",
                   "timer": k8s.paths.unit_dir ~ "/" ~ spec.unit ~ ".timer"} %}

etcd backup directory:
  file.directory:
    - name: {{ backup.dir }}
    - user: root
    - group: root
    - mode: "0700"
    - makedirs: true
{%-   if k8s.manage_services %}

etcd snapshot:
  k8s_etcd.snapshot_present:
    - name: {{ backup.dir }}
    - keep: {{ backup.keep }}
    - max_age: {{ backup.max_age }}
    - copy_to: {{ backup.copy_to | json }}
    - endpoints: {{ [k8s.cluster.etcd_local_url] | json }}
    - require:
      - file: etcd backup directory
{%-   endif %}
{%-   if backup.schedule %}

etcd backup service unit:
  file.managed:
    - name: {{ units.service }}
    - contents: {{ salt["k8s_conf.unit"](spec) | json }}
    - mode: "0600"
    - makedirs: true

etcd backup timer unit:
  file.managed:
    - name: {{ units.timer }}
    - contents: {{ spec.timer | json }}
    - mode: "0600"
    - makedirs: true
{%-     if k8s.manage_services %}

etcd backup timer:
  service.running:
    - name: {{ spec.unit }}.timer
    - enable: true
    - require:
      - file: etcd backup directory
    - watch:
      - file: etcd backup service unit
      - file: etcd backup timer unit
{%-     endif %}
{%-   else %}
{%-     if k8s.manage_services %}

etcd backup timer stopped:
  service.dead:
    - name: {{ spec.unit }}.timer
    - enable: false
{%-     endif %}
{%-     for kind, path in units | dictsort %}

etcd backup {{ kind }} unit removed:
  file.absent:
    - name: {{ path }}
{%-     endfor %}
{%-   endif %}
{%- else %}

etcd backup not on this node:
  test.nop:
    - name: "{{ opts.id }} has no etcd role in k8s:nodes"
{%- endif %}
