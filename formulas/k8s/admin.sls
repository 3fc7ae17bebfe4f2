{#- The admin kubeconfigs, on the CA minion only -- the admin certificates exist nowhere else: <config_dir>/admin.conf
    and every k8s:admin:kubeconfig_paths entry, and with k8s:pki:super_admin the break-glass super-admin.conf, all
    mode 0600. A no-op on every other node. #}
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
      - k8s_pki: {{ "super-admin" if path.endswith("/super-admin.conf") else "admin" }} certificate
{%-   endfor %}
{%- else %}

no admin kubeconfig on this node:
  test.nop:
    - name: "only the CA minion {{ k8s.cluster.ca_minion }} holds the admin credentials"
{%- endif %}
