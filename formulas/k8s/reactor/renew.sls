{#- Reactor: renew a node's certificates when its k8s_certs beacon reports them due. Master config (in
    conf/master.d/kubesalt.conf):
      reactor:
        - 'salt/beacon/*/k8s_certs/due':
          - salt://k8s/reactor/renew.sls
    A minion can fire an event with any tag and data, so neither proves which node has a certificate due. The reactor
    therefore only asks the minion named in the tag (salt/beacon/<id>/k8s_certs/due), never one named in the event
    data, and that minion renews only what it finds due itself (k8s_ops.renew re-checks its own certificates): a
    forged event naming another node makes that node check, and renew nothing that is not due there. What a node
    may hold still comes from the k8s:nodes pillar, signed by the CA minion as always. Masters and etcd members
    restart their services one node at a time (k8s_ops.renew takes an etcd lock for that). #}
{%- set parts = tag.split("/") %}
{%- if parts | length == 5 and parts[:2] == ["salt", "beacon"] and parts[3:] == ["k8s_certs", "due"]
      and parts[2] | regex_match("^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?)\\Z") %}

renew certificates of {{ parts[2] }}:
  local.k8s_ops.renew:
    - tgt: {{ parts[2] | json }}
{%- endif %}
