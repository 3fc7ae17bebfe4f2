{#- k8s.rotate.encryption, on the CA minion (a no-op elsewhere): every Secret stored in etcd under the key
    k8s_rotate:key, written back through the API where it is not. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- set args = salt["pillar.get"]("k8s_rotate", {}) %}
{%- if not args.key %}
{{ raise("k8s.rotate.secrets needs pillar k8s_rotate:key: pillar='{\"k8s_rotate\": {\"key\": \"key2\"}}' (the orchestration passes it)") }}
{%- endif %}
{%- if k8s.cluster.is_ca %}

Secrets stored under {{ args.key }}:
  k8s_rotate.secrets_encrypted:
    - key: {{ args.key | json }}
    - config: {{ k8s | json }}
{%- else %}

Secrets are re-encrypted from the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
