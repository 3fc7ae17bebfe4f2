#!/usr/bin/env bash
# Build the lab's node base image: a debootstrapped Debian <suite> (minbase; bookworm or trixie, as the lab profile
# says) with systemd, the tools a Kubernetes node needs, and salt-minion 3008.3 installed by pip into
# /opt/kubesalt-salt. On bookworm the wheels come from the cache tests/bootstrap.sh builds (same Python as the host);
# on another suite they are built once inside the image's own Python from the package index and cached in
# <wheel dir>-<suite>. Everything is installed from the host *before* the image ever boots (a booted node has no route
# to the outside).
#
#   rootfs.sh <output dir> <wheel dir> [<suite>]
#
# The output is only complete when <output dir>/.complete exists; the caller keys <output dir> by a digest of this
# script, tests/lab/files/, the suite and the wheel set, so any change here builds a new image. ~3 min.
set -euo pipefail
out=$1
wheels=$2
suite=${3:-bookworm}
here=$(cd "$(dirname "$0")/.." && pwd)
files=$here/files
say() { printf '[rootfs %s] %s\n' "$(date +%T)" "$*"; }

PACKAGES=(
  systemd systemd-sysv dbus libpam-systemd           # PID 1, logind for a proper session setup
  iproute2 iptables conntrack kmod ethtool socat     # kubelet / kube-proxy / CNI helpers
  procps util-linux mount ca-certificates curl iputils-ping less
  python3 python3-venv                               # the salt-minion venv
  libseccomp2                                        # runc, containerd
  haproxy                                            # the node-local API balancer (k8s:api_balancer)
)
# Salt's own wheels for a Python other than the host's: timelib compiles C.
[ "$suite" = bookworm ] || PACKAGES+=(gcc libc6-dev python3-dev)
SALT_PINS=(salt==3008.3 cryptography==50.0.2 requests==2.34.2 PyYAML==6.0.3)

[ -f "$out/.complete" ] && { say "cached: $out"; exit 0; }
[ -f "$wheels/.complete" ] || { echo "rootfs.sh: no complete wheel cache in $wheels (run tests/bootstrap.sh)" >&2; exit 1; }
tmp=$out.tmp
rm -rf "$tmp"
mkdir -p "$(dirname "$out")"
say "debootstrap $suite (minbase + ${#PACKAGES[@]} packages, ~2.5 min)"
debootstrap --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" "$suite" "$tmp" \
  http://deb.debian.org/debian >"$tmp.log" 2>&1 || { tail -30 "$tmp.log"; exit 1; }

if [ "$suite" != bookworm ]; then
  suite_wheels=$wheels-$suite
  if [ ! -f "$suite_wheels/.complete" ]; then
    say "salt wheels for $suite's $(chroot "$tmp" python3 -V) (pip wheel from the package index, cached in $suite_wheels)"
    cp /etc/resolv.conf "$tmp/etc/resolv.conf"
    rm -rf "$tmp/tmp/wb" "$tmp/tmp/wheels"
    # pip in the image trusts what the host's pip trusts (the host may reach the package index through a TLS proxy
    # whose CA only the host's bundle has). pip 25 verifies through truststore (OpenSSL's default paths): SSL_CERT_FILE.
    cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$tmp/tmp/host-ca.crt"
    chroot "$tmp" /usr/bin/python3 -m venv /tmp/wb
    chroot "$tmp" env PIP_CERT=/tmp/host-ca.crt SSL_CERT_FILE=/tmp/host-ca.crt PIP_FIND_LINKS= /tmp/wb/bin/pip wheel -q --disable-pip-version-check \
      -w /tmp/wheels "${SALT_PINS[@]}" >>"$tmp.log" 2>&1 || { tail -30 "$tmp.log"; exit 1; }
    rm -f "$tmp/tmp/host-ca.crt"
    rm -rf "$suite_wheels.tmp"; mkdir -p "$suite_wheels.tmp"
    cp "$tmp"/tmp/wheels/*.whl "$suite_wheels.tmp/"
    touch "$suite_wheels.tmp/.complete"
    rm -rf "$suite_wheels"; mv "$suite_wheels.tmp" "$suite_wheels"
    rm -rf "$tmp/tmp/wb" "$tmp/tmp/wheels"
  fi
  wheels=$suite_wheels
fi

say "salt-minion 3008.3 into /opt/kubesalt-salt (pip, wheels from $wheels)"
mkdir -p "$tmp/tmp/wheels"
cp "$wheels"/*.whl "$tmp/tmp/wheels/"
chroot "$tmp" /usr/bin/python3 -m venv /opt/kubesalt-salt
chroot "$tmp" /opt/kubesalt-salt/bin/pip install -q --disable-pip-version-check --no-index --find-links /tmp/wheels \
  "${SALT_PINS[@]}" >>"$tmp.log" 2>&1 || { tail -30 "$tmp.log"; exit 1; }
rm -rf "$tmp/tmp/wheels"
for b in salt-call salt-minion; do ln -sf "/opt/kubesalt-salt/bin/$b" "$tmp/usr/local/bin/$b"; done
chroot "$tmp" /opt/kubesalt-salt/bin/python -c 'import salt.version; print("[rootfs] salt", salt.version.__version__)'

say "units and configuration"
install -m 0644 "$files/salt-minion.service" "$tmp/etc/systemd/system/salt-minion.service"
install -m 0644 "$files/kubesalt-lab-cgroups.service" "$tmp/etc/systemd/system/kubesalt-lab-cgroups.service"
install -m 0644 "$files/kubesalt-lab-network.service" "$tmp/etc/systemd/system/kubesalt-lab-network.service"
install -m 0755 "$files/kubesalt-lab-cgroups" "$tmp/usr/local/sbin/kubesalt-lab-cgroups"
install -D -m 0644 "$files/journald.conf" "$tmp/etc/systemd/journald.conf.d/kubesalt-lab.conf"
install -D -m 0644 "$files/system.conf" "$tmp/etc/systemd/system.conf.d/kubesalt-lab.conf"
mkdir -p "$tmp/etc/salt/minion.d" "$tmp/etc/salt/pki/minion"
chroot "$tmp" systemctl enable salt-minion.service kubesalt-lab-cgroups.service kubesalt-lab-network.service >/dev/null 2>&1
# Units that only make noise in a container.
chroot "$tmp" systemctl disable getty@tty1.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer >/dev/null 2>&1 || true
# Per-node identity is written by the lab into each node's overlay: no shared machine-id, hostname or hosts.
: > "$tmp/etc/machine-id"
rm -f "$tmp/var/lib/dbus/machine-id"
printf 'node\n' > "$tmp/etc/hostname"
apt-get -q=2 clean -o RootDir="$tmp" 2>/dev/null || true
rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin
du -sh "$tmp" | awk '{print "[rootfs] size " $1}'
touch "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
mv "$tmp.log" "$out.log"
say "done: $out"
