{#- Certificate renewal without a human: kubesalt's k8s_certs beacon (_beacons/k8s_certs.py) on every node of
    k8s:nodes checks its certificates every k8s:pki:renewal:interval seconds and fires
    salt/beacon/<id>/k8s_certs/due when one is due; the reactor in conf/master.d/kubesalt.conf then runs
    k8s_ops.renew on that node. The beacon judges the files against what this run knows (the node's certificate
    policy, k8s_pki.expectations, and renew_days): it runs inside the salt-minion process, which must not render
    the settings through the master. With k8s:pki:renewal:enabled false the beacon is removed. Included by
    k8s.pki. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- set renewal = k8s.pki.renewal %}
{%- if opts.id in k8s.nodes %}

certificate renewal beacon:
  k8s_ops.renewal_beacon:
    - name: k8s_certs
    - enabled: {{ renewal.enabled | json }}
    - interval: {{ renewal.interval | json }}
    - retry: {{ renewal.retry | json }}
    - renew_days: {{ k8s.pki.renew_days | json }}
    - certificates: {{ salt["k8s_pki.expectations"](k8s, opts.id) | json }}
{%- else %}

certificate renewal beacon not on this node:
  test.nop:
    - name: "{{ opts.id }} is not in k8s:nodes"
{%- endif %}
