{#- Certificates of this node, issued by the CA minion under the per-identity policy (k8s_pki.entitlements: what
    this minion id may hold, from the k8s:nodes pillar). Private keys are generated here and never leave the node.
    On the CA minion this also creates the CAs (private keys only in k8s:paths:ca_dir, 0700) and the cluster
    secrets. Masters receive the service-account key and the EncryptionConfiguration; nobody else can. The
    certificate renewal beacon comes with it (k8s.pki.renewal). #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- set layout = salt["k8s_pki.layout"](k8s) %}
{%- set me = opts.id %}
{%- set is_ca = k8s.cluster.is_ca %}
{%- set is_master = k8s.cluster.is_master %}
{%- set entitled = salt["k8s_pki.entitlements"](k8s, me) %}

include:
  - k8s.common
  - k8s.pki.ca
  - k8s.pki.renewal

{%- for identity, policy in entitled | dictsort %}
{%-   set files = layout.certificates[identity] %}

{{ identity }} certificate:
  k8s_pki.certificate_managed:
    - name: {{ files.cert }}
    - key: {{ files.key }}
    - identity: {{ identity }}
    - ca_file: {{ files.ca_file }}
    - config: {{ k8s | json }}
    - require:
      - file: kubesalt directory {{ k8s.paths.pki_dir }}
{%-   if is_ca %}
      - k8s_pki: {{ policy.ca }} authority
{%-   endif %}
{%- endfor %}
{%- if is_master %}
{%-   for secret, files in layout.secrets | dictsort %}

cluster secret {{ secret }}:
  k8s_pki.secret_present:
    - name: {{ files.path }}
    - secret: {{ secret }}
    - config: {{ k8s | json }}
    - require:
      - file: kubesalt directory {{ k8s.paths.pki_dir }}
{%-     if is_ca %}
      - file: kubesalt CA directory
{%-     endif %}
{%-   endfor %}

service-account public key:
  k8s_pki.public_key_present:
    - name: {{ layout.public_keys["service-account"] }}
    - key: {{ layout.secrets["service-account"].path }}
    - require:
      - k8s_pki: cluster secret service-account
{%- endif %}
