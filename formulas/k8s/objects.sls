{#- Cluster-wide objects (k8s_conf.cluster_objects), applied from the CA minion (server-side apply, compared first: a
    second run changes nothing) with the admin credential, or the super-admin one where the admin's own binding is
    among them (k8s_conf.bootstrap_identity). A no-op on every other node. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- if k8s.cluster.is_ca and k8s.manage_services %}

include:
  - k8s.admin
  - k8s.control-plane

cluster objects:
  k8s_kube.objects_present:
    - manifests: {{ salt["k8s_conf.cluster_objects"](k8s) | json }}
    - config: {{ k8s | json }}
    - identity: {{ salt["k8s_conf.bootstrap_identity"](k8s) }}
    - require:
      - k8s_pki: {{ salt["k8s_conf.bootstrap_identity"](k8s) }} certificate
      - k8s_kube: kube-apiserver answers readyz
{%- else %}

cluster objects are applied by the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
