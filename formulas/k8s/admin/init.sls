{#- The admin kubeconfig (cluster-admin: group system:masters), on the CA minion only -- the admin certificate
    exists nowhere else -- at <config_dir>/admin.conf and every k8s:admin:kubeconfig_paths entry, mode 0600. A no-op
    on every other node: workers never get it. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- set files = salt["k8s_conf.admin"](k8s, opts.id) %}
{%- if files %}

include:
  - k8s.pki
{%-   for path, file in files | dictsort %}

admin kubeconfig {{ path }}:
  file.managed:
    - name: {{ path }}
    - contents: {{ file.contents | json }}
    - mode: "{{ file.mode }}"
    - user: root
    - group: root
    - makedirs: true
    - require:
      - k8s_pki: admin certificate
{%-   endfor %}
{%- else %}

no admin kubeconfig on this node:
  test.nop:
    - name: "only the CA minion {{ k8s.cluster.ca_minion }} holds the admin credentials"
{%- endif %}
