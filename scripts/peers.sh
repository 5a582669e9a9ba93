#!/usr/bin/env bash
# Builds the real peers the e2e layer and the benchmarks run against, into a cache outside the
# clone keyed by version, and reuses them when present. Nothing built here is ever committed.
#
#   scripts/peers.sh ztunnel          build (or reuse) Istio's ztunnel; prints the binary's path last
#   scripts/peers.sh path ztunnel     print the cached binary's path, or fail if it is not built
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

say() { echo "==> peers: $*" >&2; }
die() { echo "peers: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing ($2)"; }

ztunnel_dir() { echo "$cache/ztunnel-$ZTUNNEL_VERSION"; }

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

case "${1:-}" in
  ztunnel) build_ztunnel ;;
  path)
    case "${2:-}" in
      ztunnel) [[ -x "$(ztunnel_dir)/bin/ztunnel" ]] || die "ztunnel is not built: run scripts/peers.sh ztunnel"
               echo "$(ztunnel_dir)/bin/ztunnel" ;;
      *) die "usage: scripts/peers.sh path ztunnel" ;;
    esac ;;
  *) echo "usage: scripts/peers.sh ztunnel | path ztunnel" >&2; exit 2 ;;
esac
