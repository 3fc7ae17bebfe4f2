#!/usr/bin/env bash
# Build real Kubernetes server binaries offline from Debian bookworm's `kubernetes` source package (upstream tree with
# vendor/), with Debian's Go. Output is cached in $KUBESALT_CACHE/kubernetes/<version>/bin, keyed by version; a cached
# build is reused. Needs: a deb-src entry (added here if missing), golang-go, rsync, jq. ~13 min on 2 cores.
set -euo pipefail
cache=${KUBESALT_CACHE:-/var/cache/kubesalt}
version=1.20.2
out=$cache/kubernetes/$version
what="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet cmd/kube-proxy cmd/kubectl"
say() { printf '[kubernetes %s] %s\n' "$(date +%T)" "$*"; }

if [ -f "$out/.complete" ]; then say "cached: $out/bin"; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
if ! grep -rqs "deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  say "adding bookworm deb-src"
  cat > /etc/apt/sources.list.d/kubesalt-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -qq
fi
command -v go >/dev/null && command -v rsync >/dev/null && command -v jq >/dev/null && command -v gcc >/dev/null \
  || apt-get install -y -qq --no-install-recommends golang-go rsync jq gcc libc6-dev dpkg-dev >/dev/null

work=$cache/kubernetes/src
mkdir -p "$work"
cd "$work"
if ! ls kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  say "apt-get source --download-only kubernetes"
  apt-get source -qq --download-only kubernetes
fi
tree=$work/tree
if [ ! -f "$tree/.unpacked" ]; then
  rm -rf "$tree"; mkdir -p "$tree"
  tar -xzf kubernetes_*.orig.tar.gz -C "$tree" --strip-components=1
  touch "$tree/.unpacked"
fi
cd "$tree"
say "make WHAT=\"$what\" (about 13 min on 2 cores)"
home=$work/home; mkdir -p "$home"
env HOME="$home" GOPATH="$tree/.go" GOCACHE="$work/gocache" CGO_ENABLED=0 GOFLAGS=-mod=vendor \
  KUBE_GIT_VERSION="v$version" KUBE_GIT_TREE_STATE=clean \
  make WHAT="$what" >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
mkdir -p "$out/bin"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  cp "_output/local/bin/linux/amd64/$b" "$out/bin/$b"
done
# The sandbox ("pause") program, from the same tree.
cp build/pause/linux/pause.c "$out/pause.c"
(cd "$out/bin" && sha256sum * > ../SHA256SUMS)
touch "$out/.complete"
say "done: $out/bin"; cat "$out/SHA256SUMS"
