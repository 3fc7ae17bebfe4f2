{#- k8s.common creates kubesalt's directories (k8s:paths:config_dir, pki_dir, bin_dir). They are kept: the
    configuration directory holds the CA directory on the CA minion, and bin_dir (/usr/local/bin) is shared with
    everything else on the host. Each component's clean state removes the files it wrote, and k8s.pki.clean the
    node's certificates; an empty directory left behind is harmless. #}
kubesalt directories are kept:
  test.nop
