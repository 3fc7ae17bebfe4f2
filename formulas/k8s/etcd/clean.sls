{#- Stops and removes this etcd member: unit and binaries. The data directory is kept (it is the cluster's state);
    remove it by hand, after removing the member from the cluster, if you mean it. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- if k8s.manage_services %}

etcd service stopped:
  service.dead:
    - name: etcd
    - enable: false
{%- endif %}

etcd systemd unit removed:
  file.absent:
    - name: {{ k8s.paths.unit_dir }}/etcd.service
{%- for binary in ["etcd", "etcdctl"] %}

etcd binary {{ binary }} removed:
  file.absent:
    - name: {{ k8s.paths.bin_dir }}/{{ binary }}
{%- endfor %}
