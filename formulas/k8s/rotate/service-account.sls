{#- salt-run state.orchestrate k8s.rotate.service-account [pillar='{"drop_old": true}']
    Rotates the service-account signing key (README "Rotating the cluster's secrets"), without downtime. A first
    run:

    sync -> on the CA minion: a new key made, its public half added to the keys API servers accept -> every master
    fetches the key set and restarts its API server and controller-manager, one at a time (k8s.control-plane)
    -> the new key signs, the old one's public half still accepted -> masters one at a time again.

    Tokens signed with the old key keep working. Once they have rolled (projected tokens are refreshed by the
    kubelet within 80% of their lifetime -- an hour by default; token Secrets of the legacy kind must be deleted so
    the controller-manager re-creates them), a second run with drop_old drops the old public key:

    sync -> on the CA minion: only the new key left -> masters one at a time.

    Each step reads where the rotation stands from the CA directory: a run that stopped is resumed by running it
    again, and a first run after the key was switched changes nothing until the old key is dropped. #}
{%- set drop_old = salt["pillar.get"]("drop_old", false) %}
{%- if drop_old not in [true, false] %}
{{ raise("orchestration pillar 'drop_old': '" ~ drop_old ~ "' must be true or false, e.g. pillar='{\"drop_old\": true}'") }}
{%- endif %}
{%- import "k8s/orchestrate.jinja" as o with context %}
{%- set previous = namespace(step="validate configuration on every node") %}

{{ o.sync("G@role:master") }}
{%- for step in (["dropped"] if drop_old else ["added", "switched"]) %}

service-account key {{ step }}:
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls: k8s.rotate.service-account-key
    - pillar: {{ {"k8s_rotate": {"step": step}} | json }}
    - failhard: true
    - require:
      - salt: {{ previous.step }}

API servers and controller-managers restarted one at a time (service-account key {{ step }}):
  salt.state:
    - tgt: "G@role:master"
    - tgt_type: compound
    - sls: k8s.control-plane
    - batch: 1
    - failhard: true
    - require:
      - salt: service-account key {{ step }}
{%-   set previous.step = "API servers and controller-managers restarted one at a time (service-account key " ~ step ~ ")" %}
{%- endfor %}
