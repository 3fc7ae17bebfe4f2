# Sourced by tests/lab/build/kubernetes.sh inside the unpacked Kubernetes 1.20.2 tree (the patch set; its text is part
# of the build's cache key).
#
# The tree vendors github.com/modern-go/reflect2 v1.0.1, which reads Go runtime internals through go:linkname and
# unsafe struct layouts that changed in Go 1.18: built with bookworm's Go 1.19, kube-apiserver crashed under the
# AdmissionWebhook and CRD load (`fatal error: fault`, SIGSEGV in filterlatency.trackStarted; issue 15). v1.0.2 is the
# fix (modern-go/reflect2#23). Replace the vendored copy with Debian's golang-github-modern-go-reflect2-dev 1.0.2 and
# make go.mod and vendor/modules.txt say so, so that `-mod=vendor` accepts the tree.
src=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -f "$src/go.mod" ] || { echo "reflect2.sh: $src missing (golang-github-modern-go-reflect2-dev)" >&2; exit 1; }
grep -q '^module github.com/modern-go/reflect2' "$src/go.mod"
dst=vendor/github.com/modern-go/reflect2
rm -rf "$dst"
mkdir -p "$dst"
for f in "$src"/*.go "$src"/*.s "$src"/LICENSE; do
  [ -e "$f" ] || continue
  case "$f" in *_test.go) continue ;; esac
  cp "$f" "$dst/"
done
# go.mod (the require, and the replace that 1.20 pins every dependency with), vendor/modules.txt (its
# `# <path> <version> => <path> <version>` header) and the staging modules' go.mod (k8s.io/apimachinery, ...: in vendor
# mode only the main module's go.mod is checked against modules.txt; they are updated for consistency).
fix='/github\.com\/modern-go\/reflect2/s/v1\.0\.1/v1.0.2/g'
sed -i "$fix" go.mod vendor/modules.txt
find staging/src -name go.mod -exec sed -i "$fix" {} +
if grep -rn 'modern-go/reflect2.*v1\.0\.1' go.mod vendor/modules.txt; then
  echo "reflect2.sh: v1.0.1 still named" >&2; exit 1
fi
grep -q '^# github.com/modern-go/reflect2 v1.0.2' vendor/modules.txt
echo "reflect2: $dst <- $(dpkg-query -W -f '${Package} ${Version}' golang-github-modern-go-reflect2-dev)"
