{#- Deletes the add-ons kubesalt deployed (CoreDNS: Deployment, Service, ConfigMap, RBAC, ServiceAccount), from the
    CA minion with the admin credentials. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import_yaml "k8s/addons/coredns.yaml" as coredns %}
{%- if k8s.cluster.is_ca and k8s.manage_services %}

coredns removed:
  k8s_kube.objects_absent:
    - manifests: {{ salt["k8s_conf.coredns_objects"](k8s, coredns) | json }}
    - config: {{ k8s | json }}
{%- else %}

add-ons are removed by the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
