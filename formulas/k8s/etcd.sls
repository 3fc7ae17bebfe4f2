{#- etcd member (only on nodes with the etcd role in k8s:nodes; a no-op elsewhere): the binary (a verified catalogue
    artifact, or the distribution's package with k8s:etcd:install 'package'), the user it runs as (k8s:etcd:user),
    its data directory (0700, that user's) and the unit
    from k8s_conf.etcd -- mutual TLS for clients and peers with the PKI's etcd certificates.

    First start (the data directory holds no member): the state k8s_etcd.first_start decides at apply time -- after
    k8s.pki, just before etcd starts -- from what the other members answer, whether this member founds the cluster
    with the others of k8s:nodes (--initial-cluster-state new: the first bootstrap) or joins the running one
    (existing). A joining member is added as a learner before it starts (no vote, so the quorum never changes while
    it catches up) and promoted afterwards; etcd takes one learner at a time, so grow a running cluster with
    `salt-run state.orchestrate k8s.etcd.member` (one member at a time). The decision is written to
    k8s_conf.etcd_first_start_file, which etcd reads only while its data directory is empty; once the member has data
    that file is left alone, so membership changes never touch a running member's unit.

    Restarts: with k8s:etcd:restart_on_change (the default, for `state.apply k8s.etcd` on one node) a changed unit,
    binary or certificate restarts the member at once. The k8s.cluster orchestration applies this SLS to all members
    in parallel with restart_on_change false, which only leaves a restart marker, then runs k8s.etcd.restart one
    member at a time (batch 1), waiting for quorum after each -- members are never restarted all at once. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- if k8s.cluster.is_etcd %}
{%-   set spec = salt["k8s_conf.etcd"](k8s, opts.id) %}
{#-   The user owns the data directory only where kubesalt manages services (not in a files-only fs_root run). #}
{%-   set user = salt["k8s_conf.etcd_user"](k8s) if k8s.manage_services else None %}

include:
  - k8s.pki
{%-   if k8s.etcd.install == "artifact" %}
{{ m.binary(k8s, "etcd") }}
{%-   else %}

etcd binary:
  pkg.installed:
    - pkgs: {{ k8s.etcd.packages | json }}
    - refresh: false
{%-   endif %}
{%-   if user %}

etcd user:
  group.present:
    - name: {{ user }}
    - system: true
  user.present:
    - name: {{ user }}
    - gid: {{ user }}
    - system: true
    - home: {{ k8s.paths.etcd_data_dir }}
    - createhome: false
    - shell: /usr/sbin/nologin
    - require:
      - group: etcd user
{%-   endif %}

etcd data directory:
  file.directory:
    - name: {{ k8s.paths.etcd_data_dir }}
    - user: {{ user or "root" }}
    - group: {{ user or "root" }}
    - mode: "0700"
    - makedirs: true
{%-   if user %}
    - require:
      - user: etcd user
{%-   endif %}

etcd first start settings:
  k8s_etcd.first_start:
    - name: {{ salt["k8s_conf.etcd_first_start_file"](k8s) }}
    - config: {{ k8s | json }}
    - ask: {{ k8s.manage_services }}
    - require:
      - file: etcd data directory
      - sls: k8s.pki
{{ m.service(k8s, spec, watch=["etcd binary", {"k8s_etcd": "etcd first start settings"}],
             require=["etcd data directory"],
             restart_marker=None if k8s.etcd.restart_on_change else k8s.cluster.etcd_restart_marker) }}
{%-   if k8s.manage_services %}

etcd cluster has quorum:
  k8s_etcd.healthy:
    - timeout: {{ k8s.etcd.health_timeout }}
    {#- itself first, then the others: a learner answers nothing but its status #}
    - endpoints: {{ ([k8s.cluster.etcd_local_url] + k8s.cluster.etcd_other_client_urls) | json }}
    - require:
      - service: etcd service

etcd member votes:
  k8s_etcd.member_promoted:
    - name: {{ opts.id }}
    - peer_url: {{ k8s.cluster.etcd_peer_url }}
    - wait: {{ k8s.etcd.health_timeout }}
    {#- the others first: a learner refuses its own promotion, and a refused write is not tried elsewhere #}
    - endpoints: {{ (k8s.cluster.etcd_other_client_urls + [k8s.cluster.etcd_local_url]) | json }}
    - require:
      - k8s_etcd: etcd cluster has quorum
{%-   endif %}
{%- else %}

etcd not on this node:
  test.nop:
    - name: "{{ opts.id }} has no etcd role in k8s:nodes"
{%- endif %}
