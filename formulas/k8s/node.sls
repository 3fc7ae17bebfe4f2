{#- A Kubernetes node (every master and worker): container runtime, pod network, kubelet, kube-proxy; then the node
    is registered -- role labels node-role.kubernetes.io/<role> and, on masters, the NoSchedule taint, set by the CA
    minion from the pillar inventory (k8s_kube.register_node_remote through peer publish; a node cannot label
    itself) -- and the state waits until the node is Ready. `salt <new node> state.apply k8s.worker` runs this. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- set me = opts.id %}

include:
  - k8s.api-balancer
  - k8s.runtime
  - k8s.network
  - k8s.kubelet
  - k8s.kube-proxy
{{ m.balancer_check(k8s, require=[{"service": "kubesalt-api-balancer service"}] if k8s.api_balancer.enabled else []) }}
{%- if k8s.manage_services and k8s.cluster.is_node %}

node {{ me }} registered with its role labels:
  k8s_kube.node_registered:
    - config: {{ k8s | json }}
    - timeout: {{ k8s.timeouts.node_ready }}
    - require:
      - service: kubelet service

node {{ me }} is Ready:
  k8s_kube.node_ready:
    - config: {{ k8s | json }}
    - timeout: {{ k8s.timeouts.node_ready }}
    - require:
      - k8s_kube: node {{ me }} registered with its role labels
      - service: kube-proxy service
{%- endif %}
