#!/usr/bin/env bash
# Build real Kubernetes server binaries offline from Debian bookworm's `kubernetes` source package (upstream tree with
# vendor/), with Debian's Go, after applying the patch set in tests/lab/build/kubernetes-patches/ (vendored packages
# known to break with this Go replaced by Debian's fixed ones; see each patch's header).
#
# Output: $KUBESALT_CACHE/kubernetes/<version>+<key>/{bin/,pause.c,SHA256SUMS,PATCHES,.complete}; <key> digests the
# patch set, the WHAT list, the Go version, the source package and the versions of the Debian packages the patches
# take code from, so a patched build never reuses an unpatched one (or another patch set's), and vice versa.
# $KUBESALT_CACHE/kubernetes/<version> is a symlink to the build of the current key (what tests/support/apiserver.py,
# the lab and `make test-kube` read). A complete build of the same key is reused. Needs: a deb-src entry (added here
# if missing), golang-go, rsync, jq. ~5-13 min on 2 cores when cold; the Go build cache ($cache/kubernetes/src/gocache,
# content-addressed) makes a rebuild after a patch change much faster.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${KUBESALT_CACHE:-/var/cache/kubesalt}
version=1.20.2
what="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet cmd/kube-proxy cmd/kubectl"
patch_debs="golang-github-modern-go-reflect2-dev"
patches=("$here"/kubernetes-patches/*.sh)
say() { printf '[kubernetes %s] %s\n' "$(date +%T)" "$*"; }

export DEBIAN_FRONTEND=noninteractive
need=()
for p in golang-go rsync jq gcc libc6-dev dpkg-dev $patch_debs; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get install ${need[*]}"
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq; apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

key=$( {
  printf 'what=%s\n' "$what"
  go version
  dpkg-query -W -f '${Package} ${Version}\n' $patch_debs
  for p in "${patches[@]}"; do printf '%s\n' "${p##*/}"; cat "$p"; done
} | sha256sum | cut -c1-12)
out=$cache/kubernetes/$version+$key
link=$cache/kubernetes/$version

point_link() {
  if [ -L "$link" ] || [ ! -e "$link" ]; then
    ln -sfn "${out##*/}" "$link.tmp" && mv -T "$link.tmp" "$link"
  else   # an unpatched build from before the key existed: a real directory; it is not reused
    say "replacing $link (a build of another patch set) by a link to ${out##*/}"
    rm -rf "$link" && ln -sfn "${out##*/}" "$link"
  fi
}

if [ -f "$out/.complete" ]; then point_link; say "cached: $out/bin (patch set $key)"; exit 0; fi
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

work=$cache/kubernetes/src
mkdir -p "$work"
cd "$work"
if ! ls kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  say "apt-get source --download-only kubernetes"
  apt-get source -qq --download-only kubernetes
fi
# A fresh tree every build: the patches edit it.
tree=$work/tree
rm -rf "$tree"; mkdir -p "$tree"
tar -xzf kubernetes_*.orig.tar.gz -C "$tree" --strip-components=1
cd "$tree"
for p in "${patches[@]}"; do
  say "patch: ${p##*/}"
  ( set -euo pipefail; . "$p" )
done
say "make WHAT=\"$what\" (5-13 min on 2 cores)"
home=$work/home; mkdir -p "$home"
env HOME="$home" GOPATH="$tree/.go" GOCACHE="$work/gocache" CGO_ENABLED=0 GOFLAGS=-mod=vendor \
  KUBE_GIT_VERSION="v$version" KUBE_GIT_TREE_STATE=clean \
  make WHAT="$what" >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
rm -rf "$out.tmp"; mkdir -p "$out.tmp/bin"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  cp "_output/local/bin/linux/amd64/$b" "$out.tmp/bin/$b"
done
# The sandbox ("pause") program, from the same tree.
cp build/pause/linux/pause.c "$out.tmp/pause.c"
(cd "$out.tmp/bin" && sha256sum * > ../SHA256SUMS)
{ echo "patch set $key"; go version; dpkg-query -W -f '${Package} ${Version}\n' $patch_debs
  for p in "${patches[@]}"; do echo "${p##*/}"; done; } > "$out.tmp/PATCHES"
touch "$out.tmp/.complete"
rm -rf "$out"; mv "$out.tmp" "$out"
point_link
cd "$work" && rm -rf "$tree"
say "done: $out/bin"; cat "$out/SHA256SUMS"
