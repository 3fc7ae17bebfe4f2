#!/usr/bin/env bash
# Set up everything the test-suite needs on a fresh Debian 12 machine: Debian packages (real etcd for the etcd and
# TLS tests, systemd-analyze for unit checks) and a Python venv with the pinned toolchain. Idempotent and quick when
# everything is already there. Wheels are cached under /var/cache/kubesalt/wheels (salt builds from source; timelib
# compiles C), keyed by the requirements file's digest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$here/.venv}
cache=${KUBESALT_CACHE:-/var/cache/kubesalt}
req=$here/tests/requirements.txt
key=$(sha256sum "$req" | cut -c1-12)
wheels=$cache/wheels/$key

say() { printf '[bootstrap %s] %s\n' "$(date +%T)" "$*"; }

need_apt=()
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v etcdctl >/dev/null || need_apt+=(etcd-client)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v haproxy >/dev/null || need_apt+=(haproxy)   # the node-local API balancer, checked and run for real
command -v gcc >/dev/null || need_apt+=(gcc)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages only: no service of theirs is started on this machine (haproxy's would idle with Debian's sample config).
  no_start=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && no_start=1
  fi
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if [ "$no_start" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

if [ ! -f "$wheels/.complete" ]; then
  say "building wheel cache $wheels (first run: ~3 min)"
  mkdir -p "$wheels"
  python3 -m pip wheel -q --disable-pip-version-check --find-links "$cache/wheels" -w "$wheels" -r "$req" setuptools wheel 2>&1 \
    | grep -v "is ignored: it is neither" || true
  touch "$wheels/.complete"
fi

if [ ! -f "$venv/.kubesalt-$key" ]; then
  say "creating venv $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-index --find-links "$wheels" -r "$req"
  touch "$venv/.kubesalt-$key"
fi

# The linter make test runs (tests/requirements-lint.txt), cached the same way under its own key.
lint_req=$here/tests/requirements-lint.txt
lint_key=$(sha256sum "$lint_req" | cut -c1-12)
lint_wheels=$cache/wheels/lint-$lint_key
if [ ! -f "$lint_wheels/.complete" ]; then
  mkdir -p "$lint_wheels"
  python3 -m pip download -q --disable-pip-version-check --only-binary=:all: -d "$lint_wheels" -r "$lint_req" 2>&1 \
    | grep -v "is ignored: it is neither" || true
  touch "$lint_wheels/.complete"
fi
if [ ! -f "$venv/.kubesalt-lint-$lint_key" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check --no-index --find-links "$lint_wheels" -r "$lint_req"
  touch "$venv/.kubesalt-lint-$lint_key"
fi
say "ready: $("$venv/bin/salt-call" --version)"
