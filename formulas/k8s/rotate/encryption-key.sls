{#- k8s.rotate.encryption, on the CA minion (a no-op elsewhere): the EncryptionConfiguration moved to step
    k8s_rotate:step (added, promoted, dropped) of the rotation to key k8s_rotate:key. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- set args = salt["pillar.get"]("k8s_rotate", {}) %}
{%- if not args.key or not args.step %}
{{ raise("k8s.rotate.encryption-key needs pillar k8s_rotate:key, k8s_rotate:step: pillar='{\"k8s_rotate\": {\"key\": \"key2\", \"step\": \"added\"}}' (the orchestration passes it)") }}
{%- endif %}
{%- if k8s.cluster.is_ca %}
{%-   set layout = salt["k8s_pki.layout"](k8s) %}

encryption key {{ args.key }} {{ args.step }}:
  k8s_rotate.encryption_key:
    - name: {{ layout.secrets["encryption-config"].source }}
    - key: {{ args.key | json }}
    - step: {{ args.step | json }}
    - config: {{ k8s | json }}
{%- else %}

the encryption key is rotated on the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
