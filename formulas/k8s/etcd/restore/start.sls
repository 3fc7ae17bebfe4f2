{#- k8s.etcd.restore: start the members whose data directory holds the restored cluster -- the seed, and on a resumed
    run the members that had joined it already -- all at once (they need each other for quorum), then wait for
    quorum. A member with an empty data directory joins afterwards (k8s.etcd, one at a time). #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- if k8s.cluster.is_etcd and k8s.manage_services and salt["k8s_etcd.holds_member"](k8s.paths.etcd_data_dir) %}

restored etcd member started:
  service.running:
    - name: etcd

restored etcd cluster has quorum:
  k8s_etcd.healthy:
    - timeout: {{ k8s.etcd.health_timeout }}
    - endpoints: {{ [k8s.cluster.etcd_local_url] | json }}
    - require:
      - service: restored etcd member started
{%- else %}

no restored etcd member on {{ opts.id }}:
  test.nop
{%- endif %}
