#!/usr/bin/env bash
# Build the lab's node base image: a debootstrapped Debian bookworm (minbase) with systemd, the tools a Kubernetes
# node needs, and salt-minion 3008.3 installed by pip into /opt/kubesalt-salt from the wheel cache that
# tests/bootstrap.sh builds. Everything is installed from the host *before* the image ever boots (a booted node has
# no route to the outside).
#
#   rootfs.sh <output dir> <wheel dir>
#
# The output is only complete when <output dir>/.complete exists; the caller keys <output dir> by a digest of this
# script, tests/lab/files/ and the wheel set, so any change here builds a new image. ~3 min.
set -euo pipefail
out=$1
wheels=$2
here=$(cd "$(dirname "$0")/.." && pwd)
files=$here/files
say() { printf '[rootfs %s] %s\n' "$(date +%T)" "$*"; }

PACKAGES=(
  systemd systemd-sysv dbus libpam-systemd           # PID 1, logind for a proper session setup
  iproute2 iptables conntrack kmod ethtool socat     # kubelet / kube-proxy / CNI helpers
  procps util-linux mount ca-certificates curl iputils-ping less
  python3 python3-venv                               # the salt-minion venv
  libseccomp2                                        # runc, containerd
)

[ -f "$out/.complete" ] && { say "cached: $out"; exit 0; }
[ -f "$wheels/.complete" ] || { echo "rootfs.sh: no complete wheel cache in $wheels (run tests/bootstrap.sh)" >&2; exit 1; }
tmp=$out.tmp
rm -rf "$tmp"
mkdir -p "$(dirname "$out")"
say "debootstrap bookworm (minbase + ${#PACKAGES[@]} packages, ~2.5 min)"
debootstrap --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" bookworm "$tmp" \
  http://deb.debian.org/debian >"$tmp.log" 2>&1 || { tail -30 "$tmp.log"; exit 1; }

say "salt-minion 3008.3 into /opt/kubesalt-salt (pip, wheels from $wheels)"
mkdir -p "$tmp/tmp/wheels"
cp "$wheels"/*.whl "$tmp/tmp/wheels/"
chroot "$tmp" /usr/bin/python3 -m venv /opt/kubesalt-salt
chroot "$tmp" /opt/kubesalt-salt/bin/pip install -q --disable-pip-version-check --no-index --find-links /tmp/wheels \
  salt==3008.3 cryptography requests PyYAML >>"$tmp.log" 2>&1 || { tail -30 "$tmp.log"; exit 1; }
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
