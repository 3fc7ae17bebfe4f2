{#- Rolling-restart step of the k8s.cluster orchestration (run with batch 1): restart this member if k8s.etcd left a
    restart marker, wait for quorum, then clear the marker. No marker: nothing to do, zero changes. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- set marker = k8s.cluster.etcd_restart_marker %}
{%- if k8s.manage_services and k8s.cluster.is_etcd and salt["file.file_exists"](marker) %}

etcd member restarted:
  module.run:
    - service.restart:
      - name: etcd

etcd quorum after restart:
  k8s_etcd.healthy:
    - timeout: {{ k8s.etcd.health_timeout }}
    - require:
      - module: etcd member restarted

etcd restart marker cleared:
  file.absent:
    - name: {{ marker }}
    - require:
      - k8s_etcd: etcd quorum after restart
{%- else %}

etcd member needs no restart:
  test.nop
{%- endif %}
