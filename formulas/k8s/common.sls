{#- Base layout every kubesalt node needs. Importing map.jinja validates the whole configuration first: with an
    invalid pillar this SLS (and every other) fails to render and nothing is changed. #}
{%- from "k8s/map.jinja" import k8s with context %}

{%- for dir, mode in [(k8s.paths.config_dir, "0755"), (k8s.paths.pki_dir, "0755"), (k8s.paths.bin_dir, "0755")] %}
kubesalt directory {{ dir }}:
  file.directory:
    - name: {{ dir }}
    - user: root
    - group: root
    - mode: "{{ mode }}"
    - makedirs: true
{%- endfor %}
