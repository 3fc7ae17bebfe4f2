{#- Removes the admin kubeconfig files from the CA minion (the admin certificate stays with k8s.pki). #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- set files = salt["k8s_conf.admin"](k8s, opts.id) %}
{%- for path in files | sort %}

admin kubeconfig {{ path }} removed:
  file.absent:
    - name: {{ path }}
{%- else %}

no admin kubeconfig on this node:
  test.nop
{%- endfor %}
