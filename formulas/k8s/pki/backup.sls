{#- Backup of the CA directory on the CA minion (a no-op elsewhere), k8s:pki:backup: the CA keys and certificates, the
    service-account key and the EncryptionConfiguration -- what a lost CA minion cannot be rebuilt without -- as one
    archive in `dir` (0700; archive 0600), encrypted to `recipient` when set (salt-call --local
    k8s_pki.backup_keypair makes the key pair), pushed to the salt-master when `push` (encrypted archives only).
    A new archive is written only when the CA directory changed. The bytes never travel in a job return: the
    archive stays on the CA host (or goes over Salt's file channel with cp.push). #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- if k8s.cluster.is_ca %}

CA directory backed up:
  k8s_pki.ca_backup_present:
    - name: {{ k8s.pki.backup.dir }}
    - recipient: {{ k8s.pki.backup.recipient | json }}
    - push: {{ k8s.pki.backup.push }}
{%- else %}

the CA directory is backed up on the CA minion:
  test.nop:
    - name: "{{ k8s.cluster.ca_minion }}"
{%- endif %}
