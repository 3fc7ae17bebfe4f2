{#- k8s.upgrade, on the CA minion (a no-op on the other masters): the version-skew and health checks
    (k8s_upgrade.preflight). Fails naming every problem; otherwise its comment is the upgrade plan. Changes
    nothing. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- if k8s.cluster.is_ca and k8s.manage_services %}

upgrade preflight:
  k8s_upgrade.preflight_passed:
    - config: {{ k8s | json }}
{%- else %}

the upgrade preflight runs on the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
