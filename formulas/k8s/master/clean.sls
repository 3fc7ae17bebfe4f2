{#- Removes everything k8s.master installed on this master except the certificates and etcd's data (run
    k8s.pki.clean and k8s.etcd.clean for those, deliberately). #}
include:
  - k8s.addons.clean
  - k8s.objects.clean
  - k8s.node.clean
  - k8s.admin.clean
  - k8s.control-plane.clean
  - k8s.etcd.clean
