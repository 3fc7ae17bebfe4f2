#!/usr/bin/env bash
# Build real Kubernetes binaries offline from Debian bookworm's `kubernetes` source package (upstream tree with
# vendor/), with Debian's Go, after applying the patch set in tests/lab/build/kubernetes-patches/ (vendored packages
# known to break with this Go replaced by Debian's fixed ones; see each patch's header).
#
#   kubernetes.sh [server|e2e]
#
# Two target sets, from the same patched tree:
#   server (default)  kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl + pause.c
#                     -> $KUBESALT_CACHE/kubernetes/<version>+<key>, linked as <version>
#   e2e               the upstream conformance suite: e2e.test, ginkgo, agnhost (the e2e tests' workhorse image),
#                     sample-apiserver (the aggregator test's image) and nonewprivs (the no-new-privileges test's
#                     setuid program), + the files the run reads from the tree (conformance.yaml, the image list's
#                     manifest.go, agnhost's certificates, the Update Demo page)
#                     -> $KUBESALT_CACHE/kubernetes/<version>-e2e+<key>, linked as <version>-e2e
#                     (make lab-conformance; tests/lab/build/conformance_images.py)
# Each output holds bin/, SHA256SUMS, PATCHES and .complete; <key> digests the set's WHAT list, the patch set, the Go
# version, the source package and the versions of the Debian packages the patches take code from, so a patched build
# never reuses an unpatched one (or another patch set's), and vice versa (e2e: also the files it copies). The link
# points at the build of the current key (what tests/support/apiserver.py, the lab and `make test-kube` read). A
# complete build of the same key is reused. Two builds never share the tree at once (flock on the work dir).
# Needs: a deb-src entry (added here if missing), golang-go, rsync, jq.
# Time on 2 cores (2026-12-01): server 5-13 min; e2e 8 min with a cold Go build cache, 80 s after a build of the same
# tree. The Go build cache ($cache/kubernetes/src/gocache, content-addressed, shared by both sets: they build in the
# same tree path) is kept between builds: the tree's hack/lib/golang.sh sets GOCACHE=_output/local/go/cache itself,
# inside the tree that is removed after a build, so that path is made a link to the kept cache.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${KUBESALT_CACHE:-/var/cache/kubesalt}
version=1.20.2
set_name=${1:-server}
case $set_name in
  server)
    what="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet cmd/kube-proxy cmd/kubectl"
    bins="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
    extras="build/pause/linux/pause.c"   # the sandbox ("pause") program
    name=$version ;;
  e2e)
    what="test/e2e/e2e.test vendor/github.com/onsi/ginkgo/ginkgo test/images/agnhost vendor/k8s.io/sample-apiserver"
    what+=" test/images/nonewprivs"
    bins="e2e.test ginkgo agnhost sample-apiserver nonewprivs"
    # What the conformance run reads besides the binaries: the test list, the image list's source, agnhost's
    # certificates (its Dockerfile ADDs them to the image) and version, the Update Demo page (nautilus' image).
    extras="test/conformance/testdata/conformance.yaml test/utils/image/manifest.go
      test/images/agnhost/porter/localhost.crt test/images/agnhost/porter/localhost.key test/images/agnhost/VERSION
      test/images/nautilus/html/nautilus.jpg test/images/nautilus/html/data.json"
    name=$version-e2e ;;
  *) echo "usage: kubernetes.sh [server|e2e]" >&2; exit 2 ;;
esac
patch_debs="golang-github-modern-go-reflect2-dev"
patches=("$here"/kubernetes-patches/*.sh)
say() { printf '[kubernetes %s %s] %s\n' "$set_name" "$(date +%T)" "$*"; }

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
  [ "$set_name" = server ] || printf 'extras=%s\n' "$extras"   # (the server key predates extras: unchanged)
  go version
  dpkg-query -W -f '${Package} ${Version}\n' $patch_debs
  for p in "${patches[@]}"; do printf '%s\n' "${p##*/}"; cat "$p"; done
} | sha256sum | cut -c1-12)
out=$cache/kubernetes/$name+$key
link=$cache/kubernetes/$name

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
exec 8>"$work/.lock"
if ! flock -n 8; then
  say "another build uses $work/tree: waiting for it"
  flock 8
fi
if [ -f "$out/.complete" ]; then point_link; say "cached: $out/bin (patch set $key)"; exit 0; fi
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
say "make WHAT=\"$what\" (5-13 min on 2 cores when the Go build cache is cold)"
home=$work/home; mkdir -p "$home" "$work/gocache" _output/local/go
ln -sfn "$work/gocache" _output/local/go/cache
env HOME="$home" GOPATH="$tree/.go" GOCACHE="$work/gocache" CGO_ENABLED=0 GOFLAGS=-mod=vendor \
  KUBE_GIT_VERSION="v$version" KUBE_GIT_TREE_STATE=clean \
  make WHAT="$what" >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
rm -rf "$out.tmp"; mkdir -p "$out.tmp/bin"
for b in $bins; do
  cp "_output/local/bin/linux/amd64/$b" "$out.tmp/bin/$b"
done
for f in $extras; do   # by file name; an image's files (test/images/<image>/...) in <image>/
  case $f in
    test/images/*) d=$out.tmp/$(cut -d/ -f3 <<<"$f") ;;
    *) d=$out.tmp ;;
  esac
  mkdir -p "$d" && cp "$f" "$d/"
done
(cd "$out.tmp/bin" && sha256sum * > ../SHA256SUMS)
{ echo "patch set $key"; go version; dpkg-query -W -f '${Package} ${Version}\n' $patch_debs
  for p in "${patches[@]}"; do echo "${p##*/}"; done; } > "$out.tmp/PATCHES"
touch "$out.tmp/.complete"
rm -rf "$out"; mv "$out.tmp" "$out"
point_link
cd "$work" && rm -rf "$tree"
say "done: $out/bin"; cat "$out/SHA256SUMS"
