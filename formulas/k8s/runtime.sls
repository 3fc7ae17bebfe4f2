{#- Container runtime of a Kubernetes node (masters and workers): containerd + runc + CNI plugins (verified
    artifacts, or the distribution's packages with k8s:container_runtime:install 'package'), containerd's
    config.toml and registry hosts from data (k8s_conf.containerd), images preloaded from archives (air-gapped
    nodes), and the kernel prerequisites the kubelet needs: br_netfilter/overlay where the kernel has loadable
    modules, ip_forward and bridge-nf-call-iptables, swap off when the kubelet refuses swap. #}
{%- from "k8s/map.jinja" import k8s with context %}
{%- import "k8s/macros.jinja" as m with context %}
{%- set me = opts.id %}
{%- if k8s.cluster.is_node %}
{%-   set spec = salt["k8s_conf.containerd"](k8s, me) %}
{%-   set rt = k8s.container_runtime %}
{%-   set ctr = (k8s.paths.bin_dir ~ "/ctr") if rt.install == "artifact" else "/usr/bin/ctr" %}

include:
  - k8s.common
{%-   if k8s.manage_services %}
{#-   Kernel and host settings: only when kubesalt manages the host (never in render-only mode). #}
{%-     if salt["file.directory_exists"]("/lib/modules/" ~ grains.kernelrelease) %}
{%-       for mod in ["overlay", "br_netfilter"] %}

kernel module {{ mod }}:
  kmod.present:
    - name: {{ mod }}
    - persist: true
{%-       endfor %}
{%-     endif %}

{#-     bridge-nf-call-iptables exists only once br_netfilter is loaded (not in every kernel or container). #}
{%-     for name, value in salt["k8s_conf.sysctls"](k8s) | dictsort
          if salt["file.file_exists"]("/proc/sys/" ~ name.replace(".", "/")) %}

kernel setting {{ name }}:
  sysctl.present:
    - name: {{ name }}
    - value: {{ value }}
    - config: /etc/sysctl.d/99-kubesalt.conf
{%-     endfor %}
{%-     if k8s.kubelet.fail_swap_on %}
{#-     Whether swap is on is read at render time (/proc/swaps past its header line): an onlyif shell-out cost ~0.9 s
        of every no-op run. #}
{%-       set swaps = salt["file.read"]("/proc/swaps").splitlines()[1:] if salt["file.file_exists"]("/proc/swaps") else [] %}
{%-       if swaps %}

swap off:
  cmd.run:
    - name: swapoff -a
{%-       endif %}

swap off at boot:
  file.replace:
    - name: /etc/fstab
    - pattern: '^([^#\s]\S*\s+\S+\s+swap\s.*)$'
    - repl: '# \1  # disabled by kubesalt: the kubelet refuses swap (k8s:kubelet:fail_swap_on)'
    - ignore_if_missing: true
{%-     endif %}

node packages:
  pkg.installed:
    - pkgs: {{ salt["k8s_conf.node_packages"](k8s) | json }}
    - refresh: false
{%-   endif %}
{%-   if rt.install == "artifact" %}
{{ m.binary(k8s, "containerd") }}
{{ m.binary(k8s, "runc") }}
{{ m.binary(k8s, "cni-plugins") }}
{%-     if rt.crictl %}
{{ m.binary(k8s, "crictl") }}
{%-     endif %}
{%-     set binaries = ["containerd binary", "runc binary"] %}
{%-   else %}

container runtime packages:
  pkg.installed:
    - pkgs: {{ rt.packages | json }}
    - refresh: false
{%-     set binaries = ["container runtime packages"] %}
{%-   endif %}

CNI configuration directory:
  file.directory:
    - name: {{ k8s.paths.cni_conf_dir }}
    - mode: "0755"
    - makedirs: true
{{ m.service(k8s, spec, watch=binaries) }}
{%-   if rt.crictl %}

crictl configuration:
  file.managed:
    - name: {{ k8s.fs_root }}/etc/crictl.yaml
    - contents: {{ {"runtime-endpoint": "unix:///run/containerd/containerd.sock",
                    "image-endpoint": "unix:///run/containerd/containerd.sock"} | yaml(False) | json }}
    - mode: "0644"
{%-   endif %}
{#-   Which images containerd already holds is read at render time: an `unless` on a cmd state makes Salt's loader
      look for cmd.mod_run_check in every state module (~0.8 s of every no-op run). #}
{%-   set listed = salt["cmd.run_all"]([ctr, "--namespace", "k8s.io", "images", "list", "--quiet"], python_shell=False,
                                      ignore_retcode=True, output_loglevel="quiet")
                   if (rt.images and k8s.manage_services and salt["file.file_exists"](ctr)) else {"retcode": 1} %}
{%-   set held = listed.stdout.splitlines() if listed.retcode == 0 else [] %}
{%-   for image in rt.images %}
{%-     set archive = k8s.artifacts.cache_dir ~ "/images/" ~ image.sha256 ~ ".tar" %}

image archive {{ image.name }}:
  k8s_artifact.managed:
    - name: {{ archive }}
    - url: {{ salt["k8s_artifact.mirror_url"](image.url, k8s.artifacts.mirror) }}
    - digest: {{ image.sha256 }}
    - hash_type: sha256
    - mode: "0644"
    - cache_dir: ""
    - connect_timeout: {{ k8s.artifacts.connect_timeout }}
    - read_timeout: {{ k8s.artifacts.read_timeout }}
    - retries: {{ k8s.artifacts.retries }}
    - max_bytes: {{ k8s.artifacts.max_size_mib * 1048576 }}
{%-     if k8s.manage_services and image.name not in held %}

image {{ image.name }} in containerd:
  cmd.run:
    - name: {{ ctr }} --namespace k8s.io images import {{ archive }}
    - require:
      - service: containerd service
      - k8s_artifact: image archive {{ image.name }}
{%-     endif %}
{%-   endfor %}
{%- else %}

container runtime not on this node:
  test.nop:
    - name: "{{ me }} is neither a master nor a worker in k8s:nodes"
{%- endif %}
