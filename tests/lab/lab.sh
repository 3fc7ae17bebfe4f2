#!/usr/bin/env bash
# kubesalt lab: `make lab` / `make lab-down` / `make lab-status` and the node helpers. See tests/lab/labctl/cli.py for
# the commands (up, down, status, leftovers, node-stop|node-start|node-restart <id>, add-worker <id>, exec <id> <cmd>,
# shell <id>, salt/salt-run/salt-key <args>, check-images, orchestrate).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
[ -x "$py" ] || py=python3
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m labctl "$@"
