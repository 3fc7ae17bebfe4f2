{#- salt-run state.orchestrate k8s.rotate.encryption pillar='{"rotate_to": "key2"}'
    Rotates the encryption-at-rest key of Secrets to a new secretbox key named rotate_to (README "Rotating the
    cluster's secrets"), without downtime:

    sync -> on the CA minion: the new key added second to the EncryptionConfiguration (read, not written) -> every
    master fetches it and restarts its API server, one at a time, each waiting for /readyz (k8s.control-plane)
    -> the new key first (written; the old one still read) -> masters one at a time again -> every Secret not yet
    stored under the new key written back through the API, then checked in etcd -> the old key dropped (refused
    while etcd holds any Secret under another key) -> masters one at a time.

    Each step reads where the rotation stands from the CA minion's EncryptionConfiguration itself: a run that stopped
    is resumed by running it again with the same rotate_to, and a finished rotation run again changes nothing. A
    rotation to another name starts once the previous one is finished. The key itself only travels sealed to each
    master (k8s.pki); the steps report key names and Secret names. #}
{%- set key = salt["pillar.get"]("rotate_to", "") %}
{%- if not key or not (key | string | regex_match("^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}\\Z")) %}
{{ raise("orchestration pillar 'rotate_to': '" ~ key ~ "' is not a key name (1-63 letters, digits, '-', '_', '.'); name the new key, e.g. pillar='{\"rotate_to\": \"key2\"}'") }}
{%- endif %}
{%- import "k8s/orchestrate.jinja" as o with context %}
{%- set previous = namespace(step="validate configuration on every node") %}

{{ o.sync("G@role:master") }}
{%- for step in ["added", "promoted", "secrets", "dropped"] %}
{%-   if step == "secrets" %}

Secrets stored under {{ key }}:
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls: k8s.rotate.secrets
    - pillar: {{ {"k8s_rotate": {"key": key}} | json }}
    - failhard: true
    - require:
      - salt: {{ previous.step }}
{%-     set previous.step = "Secrets stored under " ~ key %}
{%-   else %}

encryption key {{ key }} {{ step }}:
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls: k8s.rotate.encryption-key
    - pillar: {{ {"k8s_rotate": {"key": key, "step": step}} | json }}
    - failhard: true
    - require:
      - salt: {{ previous.step }}

API servers restarted one at a time ({{ key }} {{ step }}):
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls: k8s.control-plane
    - batch: 1
    - failhard: true
    - require:
      - salt: encryption key {{ key }} {{ step }}
{%-     set previous.step = "API servers restarted one at a time (" ~ key ~ " " ~ step ~ ")" %}
{%-   endif %}
{%- endfor %}
