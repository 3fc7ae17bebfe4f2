{#- Sync kubesalt's extension modules (ext.types, in that order) to this minion, unless the orchestration's pillar
    k8s_sync:fingerprint (the master's, ext.fingerprint("master")) equals this minion's own: then there is nothing to
    copy or remove and the four syncs (a fileserver round trip per file each) are skipped. Without that pillar it
    always syncs. Renders with Salt's own modules only: a new node has no kubesalt module yet.
      salt-run state.orchestrate k8s.cluster      (its first step)
      salt worker03 state.apply k8s.sync #}
{%- import "k8s/extensions.jinja" as ext with context %}
{%- set wanted = salt["pillar.get"]("k8s_sync:fingerprint") %}
{%- if wanted and wanted == ext.fingerprint("node") %}

kubesalt extensions are current:
  test.nop:
    - name: "{{ wanted }}"
{%- else %}
{%-   for type in ext.types %}

kubesalt {{ type }} synced:
  saltutil.sync_{{ type }}:
    {#- The main process reloads its modules once the state modules are there, and its beacons after the beacons. #}
    - refresh: {{ type in ["states", "beacons"] }}
{%-     if not loop.first %}
    - require:
      - saltutil: kubesalt {{ ext.types[loop.index0 - 1] }} synced
{%-     endif %}
{%-   endfor %}
{%- endif %}
