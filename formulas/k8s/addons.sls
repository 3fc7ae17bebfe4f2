{#- Cluster add-ons, applied from the CA minion with the admin credentials: CoreDNS (ServiceAccount, RBAC,
    ConfigMap, Deployment, Service kube-dns at k8s:networks:cluster_dns_ip) when k8s:addons:coredns:enabled. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import_yaml "k8s/addons/coredns.yaml" as coredns %}
{%- if k8s.cluster.is_ca and k8s.manage_services and k8s.addons.coredns.enabled %}

include:
  - k8s.objects

coredns:
  k8s_kube.objects_present:
    - manifests: {{ salt["k8s_conf.coredns_objects"](k8s, coredns) | json }}
    - config: {{ k8s | json }}
    - require:
      - k8s_kube: cluster objects
{%- else %}

no add-ons from this node:
  test.nop:
    - name: "add-ons are applied by the CA minion {{ k8s.cluster.ca_minion }}"
{%- endif %}
