{#- Removes this master's control plane: kube-apiserver, kube-controller-manager, kube-scheduler (services, units,
    config files, kubeconfigs, binaries) and kubectl. Certificates and etcd stay (k8s.pki / k8s.etcd.clean). #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- if k8s.cluster.is_master %}
{%-   for component in ["kube-scheduler", "kube-controller-manager", "kube-apiserver"] %}
{%-     set spec = salt["k8s_conf." ~ component.replace("kube-", "").replace("-", "_")](k8s, opts.id) %}
{{ m.clean(k8s, spec, [component]) }}
{%-   endfor %}
{%-   for path in salt["k8s_artifact.installed_files"]("kubectl", k8s) %}

kubectl removed:
  file.absent:
    - name: {{ path }}
{%-   endfor %}
{%- else %}

no control plane on this node:
  test.nop
{%- endif %}
