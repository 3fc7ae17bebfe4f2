{#- Cluster-wide objects, applied from the CA minion with the admin credentials (server-side apply, compared first:
    a second run changes nothing): RBAC letting the API servers reach the kubelets (logs, exec, port-forward) and
    what kube-system needs. A no-op on every other node. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- if k8s.cluster.is_ca and k8s.manage_services %}

include:
  - k8s.admin
  - k8s.control-plane

cluster objects:
  k8s_kube.objects_present:
    - manifests: {{ salt["k8s_conf.cluster_objects"](k8s) | json }}
    - config: {{ k8s | json }}
    - require:
      - k8s_pki: admin certificate
      - k8s_kube: kube-apiserver answers readyz
{%- else %}

cluster objects are applied by the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
