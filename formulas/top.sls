# Highstate: a node converges to its role. Targeting uses the `role` grain (a list: a node may be master and worker);
# nothing security-relevant follows from it -- certificates and etcd membership come from the k8s:nodes pillar, and
# each SLS is a no-op where the pillar gives the node nothing to do.
base:
  'G@role:master':
    - match: compound
    - k8s.master
  'G@role:worker':
    - match: compound
    - k8s.worker
  'G@role:etcd':
    - match: compound
    - k8s.etcd
