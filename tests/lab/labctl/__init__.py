"""kubesalt lab driver: real nodes (systemd-nspawn, systemd as PID 1) on a private host bridge, a local artifact
mirror, a salt-master on the host, and `salt-run state.orchestrate k8s.cluster`. Standard library only (the host's
python3 runs it: tests/lab/lab.sh). One module per concern:

    common         paths, settings, output and process helpers
    inventory      lab.json: nodes, profile, served tree
    builds         lab profiles and the cached builds (Kubernetes, artifact mirror, node base image)
    nodes          nspawn nodes, their cgroups, network, identity; the image check
    mirror         the artifact mirror
    master         the salt-master (shipped config + lab settings, its mount namespace), pillar, minions
    orchestration  state.orchestrate k8s.cluster read as JSON, boot highstates, summary
    cli            the commands
"""
