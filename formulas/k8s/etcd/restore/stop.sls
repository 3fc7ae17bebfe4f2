{#- k8s.etcd.restore: stop kube-apiserver, kube-controller-manager and kube-scheduler on a master, then etcd on an
    etcd member. Nothing is removed. #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- set units = [] %}
{%- if k8s.cluster.is_master %}{% do units.extend(["kube-apiserver", "kube-controller-manager", "kube-scheduler"]) %}{% endif %}
{%- if k8s.cluster.is_etcd %}{% do units.append("etcd") %}{% endif %}
{%- for unit in units if k8s.manage_services %}

{{ unit }} stopped for the restore:
  service.dead:
    - name: {{ unit }}
{%-   if not loop.first %}
    - require:
      - service: {{ loop.previtem }} stopped for the restore
{%-   endif %}
{%- else %}

nothing to stop on {{ opts.id }}:
  test.nop
{%- endfor %}
