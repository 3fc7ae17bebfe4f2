{#- Deletes kubesalt's cluster objects (from the CA minion, with the admin credentials). Nodes lose the apiserver's
    access to kubelets (logs, exec) until k8s.objects is applied again. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- if k8s.cluster.is_ca and k8s.manage_services %}

cluster objects removed:
  k8s_kube.objects_absent:
    - manifests: {{ salt["k8s_conf.cluster_objects"](k8s) | json }}
    - config: {{ k8s | json }}
    - identity: {{ salt["k8s_conf.bootstrap_identity"](k8s) }}
{%- else %}

cluster objects are removed by the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
