{#- The cluster's certificate authorities and the originals of the cluster secrets (service-account key,
    EncryptionConfiguration): only on the CA minion (k8s:pki:ca_minion, default the first master); a no-op on every
    other node, so the orchestration can target all nodes. CA private keys are created here, in k8s:paths:ca_dir
    (0700, keys 0600), and never leave this host. The secrets are created in this step, before any master's k8s.pki
    fetches them: in the orchestration's parallel "node certificates everywhere" step another master would otherwise
    ask before the CA minion had made them. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- set layout = salt["k8s_pki.layout"](k8s) %}
{%- set is_ca = k8s.cluster.is_ca %}

include:
  - k8s.common
{%- if is_ca %}

kubesalt CA directory:
  file.directory:
    - name: {{ k8s.paths.ca_dir }}
    - user: root
    - group: root
    - mode: "0700"
    - makedirs: true
    - require:
      - file: kubesalt directory {{ k8s.paths.pki_dir }}
{%-   for ca, files in layout.cas | dictsort %}

{{ ca }} authority:
  k8s_pki.ca_present:
    - name: {{ files.cert }}
    - key: {{ files.key }}
    - common_name: {{ files.common_name }}
    - key_type: {{ k8s.pki.key_type }}
    - days: {{ k8s.pki.ca_days }}
    - renew_days: {{ k8s.pki.renew_days }}
    - require:
      - file: kubesalt CA directory
{%-   endfor %}
{%-   for secret, files in layout.secrets | dictsort %}

cluster secret {{ secret }} on the CA minion:
  k8s_pki.secret_present:
    - name: {{ files.source }}
    - secret: {{ secret }}
    - config: {{ k8s | json }}
    - require:
      - file: kubesalt CA directory
{%-   endfor %}
{%- else %}

no certificate authority on this node:
  test.nop:
    - name: "the CA minion is {{ k8s.cluster.ca_minion }}"
{%- endif %}
