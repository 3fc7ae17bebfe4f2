{#- Removes this node's certificates, keys and secrets. On the CA minion the CA directory is kept: deleting CA keys
    invalidates every certificate of the cluster, so do that by hand if you mean it. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- set layout = salt["k8s_pki.layout"](k8s) %}
{%- for identity, files in layout.certificates | dictsort %}
{%-   for path in [files.cert, files.key] %}

pki file {{ path }} removed:
  file.absent:
    - name: {{ path }}
{%-   endfor %}
{%- endfor %}
{%- for secret, files in layout.secrets | dictsort %}

pki secret {{ files.path }} removed:
  file.absent:
    - name: {{ files.path }}
{%- endfor %}
