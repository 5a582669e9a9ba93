#!/usr/bin/env bash
# Builds the real peers the e2e layer and the benchmarks run against, into a cache outside the
# clone keyed by version, and reuses them when present. Nothing built here is ever committed.
#
#   scripts/peers.sh ztunnel          build (or reuse) Istio's ztunnel; prints the binary's path last
#   scripts/peers.sh istio            fetch (or reuse) Istio's source (the istio.io/istio Go module);
#                                     prints its folder last
#   scripts/peers.sh kubernetes       build (or reuse) kube-apiserver, kube-controller-manager,
#                                     kube-scheduler, kubelet and kubectl of one Kubernetes release
#                                     from Go modules; prints their bin/ folder last
#   scripts/peers.sh etcd             build (or reuse) the etcd server from Go modules; prints its
#                                     bin/ folder last
#   scripts/peers.sh istio-cni        build (or reuse) Istio's CNI plugin (istio-cni) and node agent
#                                     (install-cni) from the same istio.io/istio module, the way
#                                     Istio's Makefile builds them; prints their bin/ folder last
#   scripts/peers.sh helm             build (or reuse) Helm 3 (helm.sh/helm/v3 cmd/helm); prints its
#                                     bin/ folder last
#   scripts/peers.sh path ztunnel|istio|istio-cni|kubernetes|etcd|helm
#                                     print the cached path, or fail if it is not there
#
# Cache: $AMBIENT_PEERS_CACHE (default /var/cache/ambient-cni/peers)/<name>-<version>/; the Go
# targets share its go-mod/ (module downloads) and go-build/ (Go's build cache), so a rebuild on
# the same machine compiles only what changed. Go builds run at nice 10 (2-core machines).
# Sources: shared/peers beside the clone (or $AMBIENT_PEERS_SRC) for ztunnel; registries for the rest.
# Go: the one on the PATH (>= 1.26); GOTOOLCHAIN is forced to local unless it names a version.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${AMBIENT_PEERS_CACHE:-/var/cache/ambient-cni/peers}"
# Where the peers' sources are: $AMBIENT_PEERS_SRC, else a shared/peers folder beside the clone or
# above it, else the workplace's /work/shared/peers.
peers_src_candidates() {
  [[ -n ${AMBIENT_PEERS_SRC:-} ]] && echo "$AMBIENT_PEERS_SRC"
  local d=$here
  while [[ $d != / ]]; do
    d=$(dirname "$d")
    echo "$d/shared/peers"
  done
  echo /work/shared/peers
}
find_source() {  # file name → path of the first candidate folder holding it
  local c
  while read -r c; do
    [[ -f "$c/$1" ]] && { echo "$c/$1"; return 0; }
  done < <(peers_src_candidates)
  return 1
}

ZTUNNEL_VERSION=1.31.0-rc.0
# istio.io/istio as the Go module proxy serves it (master, 2026-08-27), and the sha256 of that
# module zip: the tests read its testdata (nftables goldens), the benchmark builds its CNI.
ISTIO_VERSION=v0.0.0-20260827124520-eed52ebb66ad
ISTIO_ZIP_SHA256=2bc363619587a8b126791013a97f4c6fefbacbf475fba98a72d79601d7403225
# k8s.io/kubernetes as the Go module proxy serves it; its staging modules (k8s.io/api, client-go,
# ...) are the published v0.<minor>.<patch> of the same release. 1.34 needs Go >= 1.24 only; its
# own kubectl is built too, as kubectl 1.32 is two minors behind (outside the +/-1 skew it supports).
KUBERNETES_VERSION=v1.34.4
KUBERNETES_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
# The etcd server (go.etcd.io/etcd/server/v3); the newest 3.6 patch served; Go >= 1.26.0.
ETCD_VERSION=v3.6.16
# Helm 3, as the Go module proxy serves it (helm.sh/helm/v3); Go >= 1.24.
HELM_VERSION=v3.22.0

say() { echo "==> peers: $*" >&2; }
die() { echo "peers: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing ($2)"; }

ztunnel_dir() { echo "$cache/ztunnel-$ZTUNNEL_VERSION"; }
istio_dir() { echo "$cache/istio-$ISTIO_VERSION"; }
kubernetes_dir() { echo "$cache/kubernetes-$KUBERNETES_VERSION"; }
etcd_dir() { echo "$cache/etcd-$ETCD_VERSION"; }
istio_cni_dir() { echo "$cache/istio-cni-$ISTIO_VERSION"; }
helm_dir() { echo "$cache/helm-$HELM_VERSION"; }

# Cargo.toml names an optional git dependency (boring-rustls-provider, for the tls-boring
# feature only) and Cargo.lock lists its git packages; git hosts cannot be reached. The copy
# drops that dependency, the feature that needs it, and the lock entries, nothing else.
ztunnel_patch_offline() {
  local src="$1"
  sed -i -e '/^boring-rustls-provider *=/d' \
         -e '/^tls-boring *=/d' "$src/Cargo.toml"
  # Remove [[package]] blocks whose source is git+, and their names from dependency lists.
  awk '
    BEGIN { RS = ""; ORS = "\n\n" }
    /source = "git\+/ { next }
    { print }
  ' "$src/Cargo.lock" |
    sed -e '/^ "boring-rustls-provider",$/d' \
        -e '/^ "boring-additions",$/d' \
        -e '/^ "boring-sys-additions",$/d' >"$src/Cargo.lock.new"
  mv "$src/Cargo.lock.new" "$src/Cargo.lock"
  grep -q 'git+' "$src/Cargo.lock" && die "ztunnel: Cargo.lock still names a git source"
  grep -q 'boring-rustls-provider' "$src/Cargo.toml" && die "ztunnel: Cargo.toml still names boring-rustls-provider"
  return 0
}

build_ztunnel() {
  local dir bin tarball src start
  dir="$(ztunnel_dir)"
  bin="$dir/bin/ztunnel"
  if [[ -x "$bin" && -f "$dir/BUILD-INFO" ]]; then
    say "ztunnel $ZTUNNEL_VERSION cached at $bin"
    echo "$bin"
    return 0
  fi
  tarball=$(find_source "ztunnel-$ZTUNNEL_VERSION.tar.gz") ||
    die "ztunnel source ztunnel-$ZTUNNEL_VERSION.tar.gz is missing; looked in: $(peers_src_candidates | tr '\n' ' ')(set AMBIENT_PEERS_SRC to the folder holding it)"
  if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  need cargo "Rust >= 1.90 by rustup"
  need protoc "Debian package protobuf-compiler"
  need cc "Debian package build-essential"
  local rustc_version
  rustc_version="$(rustc --version | awk '{print $2}')"
  [[ "$(printf '%s\n1.90.0\n' "$rustc_version" | sort -V | head -1)" == "1.90.0" ]] ||
    die "ztunnel needs Rust >= 1.90 (edition 2024); rustc is $rustc_version"

  mkdir -p "$dir"
  src="$dir/src"
  rm -rf "$src" "$dir/bin"
  mkdir -p "$src"
  say "ztunnel $ZTUNNEL_VERSION: unpacking $tarball"
  tar -xzf "$tarball" -C "$src" --strip-components=1
  ztunnel_patch_offline "$src"
  # Crates are downloaded once into the cache (CARGO_HOME) and reused by later builds.
  export CARGO_HOME="$cache/cargo-home"
  export CARGO_TARGET_DIR="$dir/target"
  export CARGO_TERM_PROGRESS_WHEN=never
  # quick-release is ztunnel's own profile: release optimisation without fat LTO or a single
  # codegen unit (the release profile's LTO triples the build on two cores, and no test here
  # measures ztunnel's throughput). FAKE_CA needs the testing feature; ring instead of aws-lc
  # spares building aws-lc's C and assembly.
  local features=(--no-default-features --features tls-ring,testing)
  start=$(date +%s)
  say "ztunnel $ZTUNNEL_VERSION: cargo build --profile quick-release ${features[*]} (first build on two cores takes several minutes; log: $dir/build.log)"
  (
    cd "$src"
    cargo build --profile quick-release "${features[@]}" --bin ztunnel 2>&1 |
      tee "$dir/build.log" | grep --line-buffered -E '^ *(Compiling ztunnel|Finished|error|warning: unused)' >&2 || true
  )
  [[ -x "$CARGO_TARGET_DIR/quick-release/ztunnel" ]] || die "ztunnel build failed; see $dir/build.log"
  mkdir -p "$dir/bin"
  cp "$CARGO_TARGET_DIR/quick-release/ztunnel" "$bin"
  strip "$bin" 2>/dev/null || true
  local took=$(( $(date +%s) - start ))
  {
    echo "name: ztunnel"
    echo "version: $ZTUNNEL_VERSION"
    echo "source: $(basename "$tarball") sha256 $(sha256sum "$tarball" | awk '{print $1}')"
    echo "rustc: $rustc_version"
    echo "profile: quick-release"
    echo "features: ${features[*]}"
    echo "build_seconds: $took"
    echo "binary_bytes: $(stat -c %s "$bin")"
    echo "built: $(date -u +%FT%TZ)"
  } >"$dir/BUILD-INFO"
  # The build tree is large (target/ ~ GBs); the binary and the crate cache are what is reused.
  rm -rf "$CARGO_TARGET_DIR" "$src"
  say "ztunnel $ZTUNNEL_VERSION built in ${took}s, $(du -h "$bin" | cut -f1) at $bin"
  echo "$bin"
}

# The module zip from the Go module proxy ($GOPROXY's first entry, else proxy.golang.org), checked
# against the pinned sha256 and unpacked read-only into $(istio_dir)/src. Only read by tests;
# nothing of it is copied into the clone.
fetch_istio() {
  local dir src zip proxy
  dir="$(istio_dir)"
  src="$dir/src"
  if [[ -f "$dir/FETCH-INFO" && -d "$src/cni" ]]; then
    say "istio $ISTIO_VERSION cached at $src"
    echo "$src"
    return 0
  fi
  need curl "Debian package curl"
  need python3 "Debian package python3"
  proxy="${GOPROXY:-https://proxy.golang.org}"
  proxy="${proxy%%,*}"
  [[ $proxy == direct || $proxy == off ]] && proxy=https://proxy.golang.org
  mkdir -p "$dir"
  rm -rf "$src" "$dir/module.zip"
  zip="$dir/module.zip"
  say "istio $ISTIO_VERSION: downloading $proxy/istio.io/istio/@v/$ISTIO_VERSION.zip"
  curl -fsSL --retry 3 -o "$zip" "$proxy/istio.io/istio/@v/$ISTIO_VERSION.zip" ||
    die "istio: cannot download the module zip from $proxy"
  local got
  got=$(sha256sum "$zip" | awk '{print $1}')
  [[ $got == "$ISTIO_ZIP_SHA256" ]] || { rm -f "$zip"; die "istio: module zip sha256 $got, expected $ISTIO_ZIP_SHA256"; }
  # Module zips hold one folder, istio.io/istio@<version>/.
  mkdir -p "$dir/unpack"
  python3 -m zipfile -e "$zip" "$dir/unpack"
  mv "$dir/unpack/istio.io/istio@$ISTIO_VERSION" "$src"
  rm -rf "$dir/unpack" "$zip"
  chmod -R a-w "$src"
  {
    echo "name: istio"
    echo "module: istio.io/istio@$ISTIO_VERSION"
    echo "source: $proxy zip sha256 $ISTIO_ZIP_SHA256"
    echo "fetched: $(date -u +%FT%TZ)"
  } >"$dir/FETCH-INFO"
  say "istio $ISTIO_VERSION unpacked at $src"
  echo "$src"
}

# --- Go-built peers (Kubernetes, etcd) -------------------------------------------------------
# Module downloads and Go's build cache live in the peers cache and are shared by the targets.
go_setup() {
  need go "Go >= 1.26 on the PATH"
  export GOMODCACHE="$cache/go-mod" GOCACHE="$cache/go-build"
  # -modcacherw leaves the module cache deletable with rm -rf.
  export GOFLAGS="-mod=mod -modcacherw -buildvcs=false" GOWORK=off CGO_ENABLED=0
  # Only a named toolchain (GOTOOLCHAIN=go1.27.3) may be fetched; otherwise the Go on the PATH.
  [[ ${GOTOOLCHAIN:-} == go1.* ]] || export GOTOOLCHAIN=local
  # "direct" means git hosts, which cannot be reached: a module the proxy lacks fails at once.
  local p proxies=()
  IFS=',|' read -r -a p <<<"${GOPROXY:-}"
  for p in "${p[@]}"; do [[ -n $p && $p != direct && $p != off ]] && proxies+=("$p"); done
  ((${#proxies[@]})) || proxies=(https://proxy.golang.org)
  GOPROXY=$(IFS=,; echo "${proxies[*]}")
  export GOPROXY
  mkdir -p "$GOMODCACHE" "$GOCACHE"
}

go_built() {  # dir binary... → true when BUILD-INFO and every bin/<binary> are there
  local dir=$1 b
  shift
  [[ -f "$dir/BUILD-INFO" ]] || return 1
  for b; do [[ -x "$dir/bin/$b" ]] || return 1; done
}

# Runs a command at nice 10, its output appended to a log, saying every 30 s how long it has run.
# On failure: the log's last lines, and a plain word for a module the proxy does not serve or a
# Go that is too old.
go_run() {  # label log command...
  local label=$1 log=$2 t0=$SECONDS pid rc=0 i=0
  shift 2
  echo "+ $*" >>"$log"
  nice -n 10 "$@" >>"$log" 2>&1 &
  pid=$!
  trap 'kill "$pid" 2>/dev/null' EXIT
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( ++i % 30 == 0 )); then say "  $label: still running, $((SECONDS - t0))s"; fi
  done
  wait "$pid" || rc=$?
  trap - EXIT
  ((rc == 0)) && return 0
  tail -n 25 "$log" | sed 's/^/    /' >&2
  local missing
  missing=$(grep -oE '[a-zA-Z0-9._/-]+@v[^: ]+: (reading [^ ]+: )?(403|404|410)[^"]*|[a-zA-Z0-9._/-]+@v[^: ]+: invalid version: [^"]*' "$log" | sort -u | head -5 || true)
  [[ -n $missing ]] && die "$label: a module is not served by $GOPROXY: $missing (full log: $log)"
  if grep -qE 'requires go >= ' "$log"; then
    die "$label: $(grep -oE '[^ ]+ requires go >= [^ ;)]+' "$log" | head -1) but go is $(go env GOVERSION); pick a release that needs no newer Go, or export GOTOOLCHAIN=go1.27.3 (the one approved newer Go, fetched from the module proxy) (full log: $log)"
  fi
  die "$label failed (exit $rc); full log: $log"
}

# Downloads module@version into the module cache; prints the path of its go.mod, then its folder.
go_module() {  # module version log
  local json
  say "  go mod download $1@$2"
  echo "+ go mod download -json $1@$2" >>"$3"
  if ! json=$(cd / && nice -n 10 go mod download -json "$1@$2" 2>>"$3"); then
    die "$1@$2 is not served by $GOPROXY: $(sed -n 's/.*"Error": "\(.*\)".*/\1/p' <<<"$json" | head -1 | sed 's/\\n\\t*/ /g')"
  fi
  sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"$json"
  sed -n 's/.*"Dir": "\(.*\)".*/\1/p' <<<"$json"
}

go_line() { awk '$1 == "go" { print $2; exit }' "$1"; }  # go.mod → its go version

go_write_build_info() {  # dir name version took extra-lines...
  local dir=$1 name=$2 version=$3 took=$4 b
  shift 4
  {
    echo "name: $name"
    echo "version: $version"
    printf '%s\n' "$@"
    echo "go: $(go env GOVERSION) $(go env GOOS)/$(go env GOARCH) CGO_ENABLED=$CGO_ENABLED"
    echo "flags: -trimpath -ldflags '-s -w -X ...' (the -X values: build.log)"
    echo "go_proxy: $GOPROXY"
    for b in "$dir"/bin/*; do echo "binary: $(basename "$b") $(stat -c %s "$b") bytes"; done
    echo "build_seconds: $took"
    echo "built: $(date -u +%FT%TZ)"
  } >"$dir/BUILD-INFO"
}

# Kubernetes' commands from the k8s.io/kubernetes module. Its go.mod points each k8s.io/* staging
# module at ./staging/src/..., which a consumer module does not see, and requires them at v0.0.0,
# which is not published; so the consumer module in $dir/module replaces each with the published
# v0.<minor>.<patch> of the same release, then builds k8s.io/kubernetes/cmd/<binary>.
# A Go peer's cache folder: reused when built (its bin/ printed, false returned), else emptied
# for a fresh build (bin/, module/ and an empty build.log ready; Go's caches set up).
go_fresh() {  # dir name version binary...
  local dir=$1 name=$2 ver=$3
  shift 3
  if go_built "$dir" "$@"; then
    say "$name $ver cached at $dir/bin"
    echo "$dir/bin"
    return 1
  fi
  go_setup
  rm -rf "$dir/bin" "$dir/BUILD-INFO" "$dir/module"
  mkdir -p "$dir/bin" "$dir/module"
  : >"$dir/build.log"
  say "$name $ver: modules from $GOPROXY into $GOMODCACHE (log: $dir/build.log)"
}

build_kubernetes() {
  local dir ver minor staging log start mod gover b t0 took
  dir="$(kubernetes_dir)"
  ver=$KUBERNETES_VERSION
  go_fresh "$dir" kubernetes "$ver" "${KUBERNETES_BINARIES[@]}" || return 0
  start=$SECONDS
  log="$dir/build.log"
  mod=$(go_module k8s.io/kubernetes "$ver" "$log")
  mod=${mod%%$'\n'*}
  [[ -f $mod ]] || die "kubernetes: no go.mod for k8s.io/kubernetes@$ver"
  minor=${ver#v1.}
  minor=${minor%%.*}
  staging="v0.${ver#v1.}"
  local modules=()
  mapfile -t modules < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\/src\// { print $1 }' "$mod")
  ((${#modules[@]})) || die "kubernetes: k8s.io/kubernetes@$ver's go.mod replaces no staging module; this script expects it to"
  gover=$(go_line "$mod")
  {
    echo "// Written by scripts/peers.sh: builds k8s.io/kubernetes $ver's commands. Not part of ambient-cni."
    echo "module ambient-cni-peers/kubernetes"
    echo
    echo "go $gover"
    grep -E '^godebug ' "$mod" || true
    echo
    echo "require k8s.io/kubernetes $ver"
    echo
    echo "// k8s.io/kubernetes's own go.mod points these at ./staging/src; use the published modules."
    echo "replace ("
    for b in "${modules[@]}"; do printf '\t%s => %s %s\n' "$b" "$b" "$staging"; done
    echo ")"
  } >"$dir/module/go.mod"
  say "kubernetes $ver: ${#modules[@]} staging modules replaced by $staging; resolving the dependencies of ${KUBERNETES_BINARIES[*]}"
  local pkgs=()
  for b in "${KUBERNETES_BINARIES[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b@$ver"); done
  (cd "$dir/module" && go_run "kubernetes: go get" "$log" go get "${pkgs[@]}")
  say "kubernetes $ver: modules resolved ($((SECONDS - start))s, $(grep -c '^go: downloading' "$log" || true) downloaded)"
  # The version stamps Kubernetes' own build (hack/lib/version.sh) sets. The module proxy gives no
  # commit, so gitCommit stays empty.
  local ldflags="-s -w" p date
  date=$(date -u +%FT%TZ)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$ver -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    ldflags+=" -X $p.buildDate=$date -X $p.gitCommit="
  done
  local i=0 n=${#KUBERNETES_BINARIES[@]} times=()
  for b in "${KUBERNETES_BINARIES[@]}"; do
    i=$((i + 1))
    t0=$SECONDS
    say "kubernetes $ver: building $b ($i/$n, $((t0 - start))s elapsed)"
    (cd "$dir/module" && go_run "kubernetes: go build $b" "$log" \
      go build -trimpath -ldflags "$ldflags" -o "$dir/bin/$b" "k8s.io/kubernetes/cmd/$b")
    [[ -x "$dir/bin/$b" ]] || die "kubernetes: go build left no $dir/bin/$b; see $log"
    times+=("binary_seconds: $b $((SECONDS - t0))")
    say "kubernetes $ver: $b built in $((SECONDS - t0))s, $(du -h "$dir/bin/$b" | cut -f1) ($((SECONDS - start))s elapsed)"
  done
  took=$((SECONDS - start))
  go_write_build_info "$dir" kubernetes "$ver" "$took" \
    "module: k8s.io/kubernetes@$ver" \
    "staging_modules: ${#modules[@]} replaced by k8s.io/<name> $staging (module/go.mod)" \
    "${times[@]}"
  say "kubernetes $ver built in ${took}s at $dir/bin"
  echo "$dir/bin"
}

# The etcd server: go.etcd.io/etcd/server/v3's root package is etcd's main (etcd's own build
# script builds ./server). Should a release ship without it, a three-line main calling
# etcdmain.Main is written into the consumer module instead.
build_etcd() {
  local dir ver log start mod moddir gover pkg
  dir="$(etcd_dir)"
  ver=$ETCD_VERSION
  go_fresh "$dir" etcd "$ver" etcd || return 0
  start=$SECONDS
  log="$dir/build.log"
  mod=$(go_module go.etcd.io/etcd/server/v3 "$ver" "$log")
  moddir=${mod#*$'\n'}
  mod=${mod%%$'\n'*}
  [[ -f $mod ]] || die "etcd: no go.mod for go.etcd.io/etcd/server/v3@$ver"
  gover=$(go_line "$mod")
  {
    echo "// Written by scripts/peers.sh: builds the etcd server $ver. Not part of ambient-cni."
    echo "module ambient-cni-peers/etcd"
    echo
    echo "go $gover"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ver"
  } >"$dir/module/go.mod"
  pkg=go.etcd.io/etcd/server/v3
  if ! grep -qs 'etcdmain.Main' "$moddir/main.go"; then
    pkg=.
    printf '%s\n' 'package main' '' 'import (' '	"os"' '' '	"go.etcd.io/etcd/server/v3/etcdmain"' ')' '' \
      'func main() { etcdmain.Main(os.Args) }' >"$dir/module/main.go"
    say "etcd $ver: the server module has no main; building a consumer main calling etcdmain.Main"
  fi
  (cd "$dir/module" && go_run "etcd: go get" "$log" go get "go.etcd.io/etcd/server/v3@$ver")
  say "etcd $ver: modules resolved ($((SECONDS - start))s, $(grep -c '^go: downloading' "$log" || true) downloaded); building etcd"
  (cd "$dir/module" && go_run "etcd: go build etcd" "$log" \
    go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-$ver" -o "$dir/bin/etcd" "$pkg")
  [[ -x "$dir/bin/etcd" ]] || die "etcd: go build left no $dir/bin/etcd; see $log"
  local took=$((SECONDS - start))
  go_write_build_info "$dir" etcd "$ver" "$took" "module: go.etcd.io/etcd/server/v3@$ver (package $pkg)"
  say "etcd $ver built in ${took}s, $(du -h "$dir/bin/etcd" | cut -f1) at $dir/bin/etcd"
  echo "$dir/bin"
}

# Istio's CNI plugin and node agent from the istio.io/istio module (the same version whose source
# `istio` fetches), built as Istio's Makefile builds CNI_BINARIES: CGO off, its agent tags, -s -w,
# and pkg/version stamped so `install-cni --version` and its logs say what runs.
ISTIO_CNI_BINARIES=(istio-cni install-cni)
build_istio_cni() {
  local dir ver log start mod gover b t0 times=()
  dir="$(istio_cni_dir)"
  ver=$ISTIO_VERSION
  go_fresh "$dir" istio-cni "$ver" "${ISTIO_CNI_BINARIES[@]}" || return 0
  start=$SECONDS
  log="$dir/build.log"
  mod=$(go_module istio.io/istio "$ver" "$log")
  mod=${mod%%$'\n'*}
  [[ -f $mod ]] || die "istio-cni: no go.mod for istio.io/istio@$ver"
  grep -qE '^replace' "$mod" &&
    die "istio-cni: istio.io/istio@$ver's go.mod has replace directives, which a consumer module does not inherit; copy them into $dir/module/go.mod"
  gover=$(go_line "$mod")
  {
    echo "// Written by scripts/peers.sh: builds Istio's CNI ($ver). Not part of ambient-cni."
    echo "module ambient-cni-peers/istio-cni"
    echo
    echo "go $gover"
    echo
    echo "require istio.io/istio $ver"
  } >"$dir/module/go.mod"
  (cd "$dir/module" && go_run "istio-cni: go get" "$log" go get \
    "istio.io/istio/cni/cmd/istio-cni@$ver" "istio.io/istio/cni/cmd/install-cni@$ver")
  say "istio-cni $ver: modules resolved ($((SECONDS - start))s, $(grep -c '^go: downloading' "$log" || true) downloaded)"
  # Makefile.core.mk: CNI_BINARIES are built with AGENT_TAGS and RELEASE_LDFLAGS.
  local tags=agent,disable_pgv,grpcnotrace,retrynotrace commit=${ver##*-} pv=istio.io/istio/pkg/version
  local ldflags="-s -w -X $pv.buildVersion=1.31-dev-$commit -X $pv.buildGitRevision=$commit"
  ldflags+=" -X $pv.buildStatus=Clean -X $pv.buildTag=$ver -X $pv.buildHub=docker.io/istio"
  for b in "${ISTIO_CNI_BINARIES[@]}"; do
    t0=$SECONDS
    say "istio-cni $ver: building $b ($((t0 - start))s elapsed)"
    (cd "$dir/module" && go_run "istio-cni: go build $b" "$log" \
      go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$dir/bin/$b" "istio.io/istio/cni/cmd/$b")
    [[ -x "$dir/bin/$b" ]] || die "istio-cni: go build left no $dir/bin/$b; see $log"
    times+=("binary_seconds: $b $((SECONDS - t0))")
  done
  local took=$((SECONDS - start))
  go_write_build_info "$dir" istio-cni "$ver" "$took" "module: istio.io/istio@$ver" "tags: $tags" "${times[@]}"
  say "istio-cni $ver built in ${took}s at $dir/bin"
  echo "$dir/bin"
}

# Helm 3's command (helm.sh/helm/v3/cmd/helm), its version stamped as Helm's Makefile does.
build_helm() {
  local dir ver log start mod gover
  dir="$(helm_dir)"
  ver=$HELM_VERSION
  go_fresh "$dir" helm "$ver" helm || return 0
  start=$SECONDS
  log="$dir/build.log"
  mod=$(go_module helm.sh/helm/v3 "$ver" "$log")
  mod=${mod%%$'\n'*}
  [[ -f $mod ]] || die "helm: no go.mod for helm.sh/helm/v3@$ver"
  gover=$(go_line "$mod")
  {
    echo "// Written by scripts/peers.sh: builds Helm $ver. Not part of ambient-cni."
    echo "module ambient-cni-peers/helm"
    echo
    echo "go $gover"
    echo
    echo "require helm.sh/helm/v3 $ver"
  } >"$dir/module/go.mod"
  (cd "$dir/module" && go_run "helm: go get" "$log" go get "helm.sh/helm/v3/cmd/helm@$ver")
  say "helm $ver: modules resolved ($((SECONDS - start))s); building helm"
  (cd "$dir/module" && go_run "helm: go build helm" "$log" \
    go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$ver -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    -o "$dir/bin/helm" helm.sh/helm/v3/cmd/helm)
  [[ -x "$dir/bin/helm" ]] || die "helm: go build left no $dir/bin/helm; see $log"
  local took=$((SECONDS - start))
  go_write_build_info "$dir" helm "$ver" "$took" "module: helm.sh/helm/v3@$ver"
  say "helm $ver built in ${took}s at $dir/bin/helm"
  echo "$dir/bin"
}

case "${1:-}" in
  ztunnel) build_ztunnel ;;
  istio) fetch_istio ;;
  kubernetes) build_kubernetes ;;
  etcd) build_etcd ;;
  istio-cni) build_istio_cni ;;
  helm) build_helm ;;
  path)
    case "${2:-}" in
      ztunnel) [[ -x "$(ztunnel_dir)/bin/ztunnel" ]] || die "ztunnel is not built: run scripts/peers.sh ztunnel"
               echo "$(ztunnel_dir)/bin/ztunnel" ;;
      istio) [[ -f "$(istio_dir)/FETCH-INFO" ]] || die "istio is not fetched: run scripts/peers.sh istio"
             echo "$(istio_dir)/src" ;;
      kubernetes) go_built "$(kubernetes_dir)" "${KUBERNETES_BINARIES[@]}" ||
                    die "kubernetes $KUBERNETES_VERSION is not built: run scripts/peers.sh kubernetes"
                  echo "$(kubernetes_dir)/bin" ;;
      etcd) go_built "$(etcd_dir)" etcd || die "etcd $ETCD_VERSION is not built: run scripts/peers.sh etcd"
            echo "$(etcd_dir)/bin" ;;
      istio-cni) go_built "$(istio_cni_dir)" "${ISTIO_CNI_BINARIES[@]}" ||
                   die "istio-cni $ISTIO_VERSION is not built: run scripts/peers.sh istio-cni"
                 echo "$(istio_cni_dir)/bin" ;;
      helm) go_built "$(helm_dir)" helm || die "helm $HELM_VERSION is not built: run scripts/peers.sh helm"
            echo "$(helm_dir)/bin" ;;
      *) die "usage: scripts/peers.sh path ztunnel|istio|istio-cni|kubernetes|etcd|helm" ;;
    esac ;;
  *) echo "usage: scripts/peers.sh ztunnel | istio | istio-cni | kubernetes | etcd | helm | path ztunnel|istio|istio-cni|kubernetes|etcd|helm" >&2; exit 2 ;;
esac
