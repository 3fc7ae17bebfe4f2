{#- Retires the etcd member of this node once it has left the cluster: on a node that k8s:nodes no longer lists as an
    etcd member, or the node k8s.node.remove removes (k8s_op:node), whose data directory still holds a member. It
    first checks that the member is gone from the running cluster (k8s.etcd.membership removes it), then stops and
    disables etcd and its backup timer, removes their units and moves the data directory aside
    (<data dir>.removed-<time>): a retired member must never start again with that data, and nothing is deleted.
    Elsewhere a no-op. #}
{%- from "k8s/map.jinja" import k8s, op with context %}
{%- set data_dir = k8s.paths.etcd_data_dir %}
{%- set leaving = (not k8s.cluster.is_etcd) or op.node == opts.id %}
{%- if leaving and k8s.manage_services and salt["k8s_etcd.holds_member"](data_dir) %}

etcd member of {{ opts.id }} has left the cluster:
  k8s_etcd.member_absent:
    - name: {{ opts.id }}
    - remove: false
    {#- asked of the other members: a removed member's own view of the membership can be stale #}
    - endpoints: {{ k8s.cluster.etcd_client_urls | reject("equalto", k8s.cluster.etcd_client_url) | list | json }}
{%-   for unit in ["kubesalt-etcd-backup.timer", "etcd"] %}

{{ unit }} stopped for good:
  service.dead:
    - name: {{ unit }}
    - enable: false
    - require:
      - k8s_etcd: etcd member of {{ opts.id }} has left the cluster
{%-   endfor %}
{%-   for unit in ["etcd.service", "kubesalt-etcd-backup.service", "kubesalt-etcd-backup.timer"] %}

{{ unit }} unit removed:
  file.absent:
    - name: {{ k8s.paths.unit_dir }}/{{ unit }}
    - require:
      - service: etcd stopped for good
{%-   endfor %}

etcd data directory moved aside:
  module.run:
    - k8s_etcd.move_aside:
      - path: {{ data_dir }}
      - reason: removed
    - require:
      - service: etcd stopped for good
{%- else %}

no retired etcd member on this node:
  test.nop
{%- endif %}
