#!/usr/bin/env bash
# kube-assets.sh: provides a kube-apiserver and an etcd for the tests that
# run against a real API server (internal/kubetest), in the layout
# controller-runtime's envtest expects under KUBEBUILDER_ASSETS:
#   $DIR/kube-apiserver   built from the Go module proxy
#   $DIR/etcd             Debian's etcd-server (/usr/bin/etcd), copied
# It prints $DIR on stdout (and only that), so a caller can write
#   export KUBEBUILDER_ASSETS="$(hack/kube-assets.sh)"
# When $DIR already holds both binaries it does nothing (seconds).
#
# kube-apiserver: k8s.io/kubernetes is not meant to be required as a module:
# its go.mod replaces its staging modules (k8s.io/api, k8s.io/apimachinery,
# ...) by ./staging/src/..., which a requiring module does not see, and
# requires them at v0.0.0. A temporary module that requires
# k8s.io/kubernetes and replaces each of those staging modules by the
# published v0.<minor>.<patch> tag builds it with CGO_ENABLED=0
# (see https://github.com/kubernetes/kubernetes/issues/79384).
#
# Environment:
#   KUBE_VERSION   Kubernetes version (default v1.34.2)
#   DTKBOT_CACHE   cache root (default $HOME/.cache/dtkbot); $DIR is
#                  $DTKBOT_CACHE/kube-$KUBE_VERSION unless given as $1
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.34.2}"
DIR="${1:-${DTKBOT_CACHE:-$HOME/.cache/dtkbot}/kube-$KUBE_VERSION}"
log() { echo "kube-assets: $*" >&2; }

if [ -x "$DIR/kube-apiserver" ] && [ -x "$DIR/etcd" ]; then
  echo "$DIR"
  exit 0
fi
mkdir -p "$DIR"

if [ ! -x "$DIR/etcd" ]; then
  if [ ! -x /usr/bin/etcd ]; then
    log "installing Debian's etcd-server"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null) || {
      log "could not install etcd-server (apt-get install etcd-server)"; exit 1; }
    # The package enables and starts a system etcd on :2379; the tests start
    # their own on free ports, so stop the system one where systemd runs.
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
  # A copy, not a link: the cache keeps working if the package goes away.
  cp /usr/bin/etcd "$DIR/etcd.tmp" && mv "$DIR/etcd.tmp" "$DIR/etcd"
fi

if [ ! -x "$DIR/kube-apiserver" ]; then
  command -v go >/dev/null 2>&1 || { log "go is not on PATH"; exit 1; }
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  staging="v0.${KUBE_VERSION#v1.}"   # v1.34.2 -> v0.34.2
  export CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod GO111MODULE=on
  cd "$work"
  log "reading k8s.io/kubernetes@$KUBE_VERSION's go.mod"
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  [ -f "$gomod" ] || { log "could not download k8s.io/kubernetes@$KUBE_VERSION"; exit 1; }
  # Its staging modules are exactly the ones it replaces by ./staging/src/...
  mods="$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$gomod")"
  [ -n "$mods" ] || { log "no staging replaces found in $gomod"; exit 1; }
  {
    echo "module dtkbot.local/kube-apiserver"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//')"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "tool k8s.io/kubernetes/cmd/kube-apiserver"
    echo
    for m in $mods; do echo "replace $m => $m $staging"; done
  } >go.mod
  log "building kube-apiserver $KUBE_VERSION ($(echo "$mods" | wc -w) staging modules at $staging)"
  start=$SECONDS
  go mod tidy >&2
  # The version the server reports (/version), as kubernetes' own build sets it
  # (hack/lib/version.sh).
  minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
  ldflags="$ldflags -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
  go build -trimpath -ldflags "$ldflags" -o "$DIR/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2
  mv "$DIR/kube-apiserver.tmp" "$DIR/kube-apiserver"
  log "built kube-apiserver in $((SECONDS - start))s"
fi
echo "$DIR"
