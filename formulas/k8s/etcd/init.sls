{#- etcd member (only on nodes with the etcd role in k8s:nodes; a no-op elsewhere). Mutual TLS for clients and
    peers with the PKI's etcd certificates, initial cluster from the pillar inventory.

    Restarts: with k8s:etcd:restart_on_change (the default, for `state.apply k8s.etcd` on one node) a changed unit
    or certificate restarts the member at once. The k8s.cluster orchestration applies this SLS to all members in
    parallel with restart_on_change false, which only leaves a restart marker, then runs k8s.etcd.restart one member
    at a time (batch 1), waiting for quorum after each -- members are never restarted all at once. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- set me = opts.id %}
{%- if me in k8s.cluster.etcd_members %}
{%-   set etcd_bin = k8s.paths.bin_dir ~ "/etcd" if k8s.etcd.install == "artifact" else "/usr/bin/etcd" %}
{%-   set flags = salt["k8s_etcd.server_flags"](k8s, me, cert_dir=k8s.paths.pki_dir) %}
{%-   set unit = k8s.paths.unit_dir ~ "/etcd.service" %}
{%-   set marker = k8s.paths.etcd_data_dir ~ ".restart-pending" %}

include:
  - k8s.pki

{%-   if k8s.etcd.install == "artifact" %}
{%-     set a = salt["k8s_artifact.resolve"]("etcd", k8s) %}

etcd binaries:
  k8s_artifact.extracted:
    - name: {{ k8s.paths.bin_dir }}
    - url: {{ a.url }}
    - digest: {{ a.digest | json }}
    - hash_type: {{ a.hash_type }}
    - checksum_url: {{ a.checksum_url | json }}
    - members: {{ a.members | json }}
    - cache_dir: {{ k8s.artifacts.cache_dir }}
    - connect_timeout: {{ k8s.artifacts.connect_timeout }}
    - read_timeout: {{ k8s.artifacts.read_timeout }}
    - retries: {{ k8s.artifacts.retries }}
    - require:
      - file: kubesalt directory {{ k8s.paths.bin_dir }}
{%-   else %}

etcd binaries:
  pkg.installed:
    - pkgs: [etcd-server, etcd-client]
{%-   endif %}

etcd data directory:
  file.directory:
    - name: {{ k8s.paths.etcd_data_dir }}
    - user: root
    - group: root
    - mode: "0700"
    - makedirs: true

etcd systemd unit:
  file.managed:
    - name: {{ unit }}
    - source: salt://k8s/etcd/files/etcd.service.j2
    - template: jinja
    - makedirs: true
    - mode: "0644"
    - context:
        exec: {{ etcd_bin | json }}
        flags: {{ flags | json }}
        data_dir: {{ k8s.paths.etcd_data_dir | json }}

{%-   if k8s.manage_services %}

etcd service:
  service.running:
    - name: etcd
    - enable: true
    - require:
      - etcd binaries
      - file: etcd data directory
      - file: etcd systemd unit
      - k8s_pki: etcd-server certificate
      - k8s_pki: etcd-peer certificate
{%-     if k8s.etcd.restart_on_change %}
    - watch:
      - file: etcd systemd unit
      - etcd binaries
      - k8s_pki: etcd-server certificate
      - k8s_pki: etcd-peer certificate
{%-     else %}

etcd restart pending:
  file.managed:
    - name: {{ marker }}
    - contents: "configuration changed; k8s.etcd.restart restarts this member"
    - onchanges:
      - file: etcd systemd unit
      - etcd binaries
      - k8s_pki: etcd-server certificate
      - k8s_pki: etcd-peer certificate
{%-     endif %}

etcd cluster has quorum:
  k8s_etcd.healthy:
    - timeout: {{ k8s.etcd.health_timeout }}
    - endpoints: {{ ["https://127.0.0.1:" ~ k8s.etcd.client_port] | json }}
    - require:
      - service: etcd service
{%-   endif %}
{%- else %}
{#- Not an etcd member: nothing to do. #}
etcd not on this node:
  test.nop:
    - name: "{{ me }} has no etcd role in k8s:nodes"
{%- endif %}
