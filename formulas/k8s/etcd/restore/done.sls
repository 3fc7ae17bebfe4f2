{#- k8s.etcd.restore, after the control plane is back: every member forgets the restore (its marker goes), so the
    next restore of the same snapshot restores again. #}
{%- from "k8s/map.jinja" import k8s with context %}

etcd restore marker cleared:
  file.absent:
    - name: {{ k8s.cluster.etcd_restore_marker }}
