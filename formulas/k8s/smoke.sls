{#- Smoke checks of the k8s.cluster orchestration. On every node: the API answers through its node-local balancer
    (k8s:api_balancer). From the CA minion: the API answers /readyz, every master and worker of the inventory is a
    Ready node, and CoreDNS is available (when enabled and k8s:addons:coredns:wait_ready). Checks report no changes;
    a failure names what is not ready. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{{ m.balancer_check(k8s) }}
{%- if k8s.cluster.is_ca and k8s.manage_services %}

API server ready:
  k8s_kube.api_ready:
    - config: {{ k8s | json }}
    - timeout: {{ k8s.timeouts.apiserver_ready }}

every node Ready:
  k8s_kube.nodes_ready:
    - nodes: {{ k8s.cluster.nodes | json }}
    - config: {{ k8s | json }}
    - timeout: {{ k8s.timeouts.node_ready }}
    - require:
      - k8s_kube: API server ready
{%-   if k8s.addons.coredns.enabled and k8s.addons.coredns.wait_ready %}

CoreDNS available:
  k8s_kube.deployment_available:
    - name: coredns
    - namespace: kube-system
    - config: {{ k8s | json }}
    - timeout: {{ k8s.timeouts.addons_ready }}
    - require:
      - k8s_kube: every node Ready
{%-   endif %}
{%- else %}

cluster smoke checks run on the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
