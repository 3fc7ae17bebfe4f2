{#- Removes this node's certificates and keys, and the copies of the cluster secrets a master holds: everything the
    CA minion can issue or hand out again. It never touches the CA directory (k8s:paths:ca_dir): the CA keys and the
    originals of the cluster secrets live there, on the CA minion, and nothing could recreate them. The certificate
    renewal beacon goes too. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- set layout = salt["k8s_pki.layout"](k8s) %}

certificate renewal beacon removed:
  k8s_ops.renewal_beacon:
    - name: k8s_certs
    - enabled: false
{%- for identity, files in layout.certificates | dictsort %}
{%-   for path in [files.cert, files.key] %}

pki file {{ path }} removed:
  file.absent:
    - name: {{ path }}
{%-   endfor %}
{%- endfor %}
{%- for secret, files in layout.secrets | dictsort if files.path != files.source %}

pki secret copy {{ files.path }} removed:
  file.absent:
    - name: {{ files.path }}
{%- endfor %}
