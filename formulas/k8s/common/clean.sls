{#- Removes what k8s.common created. Run the component clean states first. #}
{%- from "k8s/map.jinja" import k8s with context %}

kubesalt config directory removed:
  file.absent:
    - name: {{ k8s.paths.config_dir }}
