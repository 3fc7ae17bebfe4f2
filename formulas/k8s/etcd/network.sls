{#- The pod-network configuration in etcd (flannel's <prefix>/config: Network, SubnetLen, Backend), written once
    from the CA minion with its etcd client certificate. Idempotent (JSON compared as data) and CAS-safe; refuses a
    Network that overlaps the node or service network. Needs a running etcd (k8s:manage_services). #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- if k8s.manage_services and k8s.cluster.is_ca %}

pod network configuration in etcd:
  k8s_etcd.network_config_present:
    - name: {{ k8s.etcd.network_prefix }}
    - config: {{ k8s | json }}
{%- else %}

pod network configuration written elsewhere:
  test.nop:
    - name: "written by the CA minion {{ k8s.cluster.ca_minion }} when services are managed"
{%- endif %}
