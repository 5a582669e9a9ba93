#!/usr/bin/env bash
# Builds the real peers the e2e layer and the benchmarks run against, into a cache outside the
# clone keyed by version, and reuses them when present. Nothing built here is ever committed.
#
#   scripts/peers.sh ztunnel          build (or reuse) Istio's ztunnel; prints the binary's path last
#   scripts/peers.sh istio            fetch (or reuse) Istio's source (the istio.io/istio Go module);
#                                     prints its folder last
#   scripts/peers.sh path ztunnel|istio  print the cached path, or fail if it is not there
#
# Cache: $AMBIENT_PEERS_CACHE (default /var/cache/ambient-cni/peers)/<name>-<version>/.
# Sources: shared/peers beside the clone (or $AMBIENT_PEERS_SRC) for ztunnel; registries for the rest.
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

say() { echo "==> peers: $*" >&2; }
die() { echo "peers: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing ($2)"; }

ztunnel_dir() { echo "$cache/ztunnel-$ZTUNNEL_VERSION"; }
istio_dir() { echo "$cache/istio-$ISTIO_VERSION"; }

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

case "${1:-}" in
  ztunnel) build_ztunnel ;;
  istio) fetch_istio ;;
  path)
    case "${2:-}" in
      ztunnel) [[ -x "$(ztunnel_dir)/bin/ztunnel" ]] || die "ztunnel is not built: run scripts/peers.sh ztunnel"
               echo "$(ztunnel_dir)/bin/ztunnel" ;;
      istio) [[ -f "$(istio_dir)/FETCH-INFO" ]] || die "istio is not fetched: run scripts/peers.sh istio"
             echo "$(istio_dir)/src" ;;
      *) die "usage: scripts/peers.sh path ztunnel|istio" ;;
    esac ;;
  *) echo "usage: scripts/peers.sh ztunnel | istio | path ztunnel|istio" >&2; exit 2 ;;
esac
