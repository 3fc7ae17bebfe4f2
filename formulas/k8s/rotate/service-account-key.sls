{#- k8s.rotate.service-account, on the CA minion (a no-op elsewhere): the service-account key moved to step
    k8s_rotate:step (added, switched, dropped). #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- set args = salt["pillar.get"]("k8s_rotate", {}) %}
{%- if not args.step %}
{{ raise("k8s.rotate.service-account-key needs pillar k8s_rotate:step: pillar='{\"k8s_rotate\": {\"step\": \"added\"}}' (the orchestration passes it)") }}
{%- endif %}
{%- if k8s.cluster.is_ca %}
{%-   set layout = salt["k8s_pki.layout"](k8s) %}

service-account key {{ args.step }}:
  k8s_rotate.service_account_key:
    - name: {{ layout.secrets["service-account"].source }}
    - step: {{ args.step | json }}
    - config: {{ k8s | json }}
{%- else %}

the service-account key is rotated on the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
