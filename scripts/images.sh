#!/usr/bin/env bash
# Builds, offline and reproducibly, the three container images the cluster tests need, and imports
# them into containerd's k8s.io namespace (where the kubelet's CRI looks for them).
#
#   scripts/images.sh build  [--out DIR] [--bin-dir DIR] [--tag TAG] [--no-strip]
#   scripts/images.sh import [--out DIR] [--address SOCK] [--namespace NS] [--snapshotter NAME]
#   scripts/images.sh list   [--out DIR]
#   scripts/images.sh istio-cni [--out DIR] [--bin-dir DIR] [--tag TAG]
#                            Istio's install-cni image (benchmark peer; build/images-istio)
#
# Images (each an OCI image layout with a docker-archive manifest.json beside index.json, tarred:
# DIR/<name>_<tag>.tar, one gzip layer; `ctr images import` names it from index.json's
# io.containerd.image.name annotation, the normalised name CRI looks up, e.g.
# docker.io/library/ambient-cni-node:0.1.0 for the manifests' `image: ambient-cni-node:0.1.0`):
#   registry.k8s.io/pause:3.10  the sandbox image: scripts/images/pause.c, gcc -static, ENTRYPOINT /pause
#   ambient-test/app:0.1.0      Debian's busybox-static at /bin/busybox, every applet symlinked in /bin
#   ambient-cni-node:<TAG>      /usr/local/bin/ambient-cni-node + /usr/local/bin/ambient-cni, the
#                               dynamic loader and the shared libraries they need (the ldd closure of
#                               both binaries and of libcurl.so.4, which the kube client dlopen()s),
#                               copied from the host's Debian packages; which package and version
#                               each comes from is in /usr/share/ambient-cni/PACKAGES and in the
#                               io.ambient-cni.debian-packages label.
#
# --out      where the tarballs go (default build/images); DIR/IMAGES lists what the last build made
#            and is what `import` reads.
# --bin-dir  where ambient-cni and ambient-cni-node are (default build/bin).
# --tag      tag of ambient-cni-node (default: VERSION of project() in CMakeLists.txt). The tag is also
#            in the image's labels, so two tags are two distinct image digests.
# --no-strip keep the binaries' debug info (default: strip it, as a release image does; the
#            RelWithDebInfo plugin is ~29 MiB with it, ~3 MiB without, and the installer copies
#            it onto every node).
# --address  containerd socket (default $CONTAINERD_ADDRESS or /run/containerd/containerd.sock).
#
# Reproducible: every file mtime and the config's `created` are SOURCE_DATE_EPOCH (default 0),
# entries sorted, uid/gid 0, no atime/ctime/PID in pax headers, gzip -n; the same inputs (binaries,
# host packages) give byte-identical tarballs and digests. Needs tar, gzip, jq, gcc + libc6-dev
# (static libc), busybox-static, dpkg-query; missing Debian packages are apt-get installed.
set -euo pipefail
export LC_ALL=C TZ=UTC
umask 022

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here="$repo/scripts/images"

PAUSE_REF=registry.k8s.io/pause:3.10
APP_REF=ambient-test/app:0.1.0
NODE_NAME=ambient-cni-node
# Loaded with dlopen() at run time, so ldd of the binaries does not list it (kube/curl_api.cpp).
DLOPEN_LIBS=(libcurl.so.4)
MULTIARCH=x86_64-linux-gnu

die() { echo "images.sh: $*" >&2; exit 1; }
log() { echo "images.sh: $*" >&2; }

usage() { sed -n '5,9p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2; exit "${1:-2}"; }

project_version() {
  sed -nE 's/^[[:space:]]*project\([^)]*VERSION[[:space:]]+([0-9]+(\.[0-9]+)*).*/\1/p' \
    "$repo/CMakeLists.txt" | head -n1
}

# `need CMD PACKAGE`: apt-get installs PACKAGE when CMD (a command or an absolute file) is missing.
need() {
  local cmd=$1 pkg=$2
  if [[ $cmd == /* ]]; then [[ -e $cmd ]] && return 0; else command -v "$cmd" >/dev/null && return 0; fi
  command -v apt-get >/dev/null || die "$cmd missing and no apt-get to install $pkg"
  log "installing $pkg (for $cmd)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >&2 ||
    die "apt-get install $pkg failed"
}

sha256() { sha256sum "$1" | cut -d' ' -f1; }
fsize() { stat -c %s "$1"; }

# Deterministic tar of the entries of directory $1 into file $2 (the entries are listed without a
# leading ./ and without the directory itself).
det_tar() {
  local dir=$1 out=$2
  (cd "$dir" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | sort |
    tar --create --file="$out" --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner \
      --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
      --no-acls --no-xattrs --no-selinux --files-from=-)
}

# `add_blob LAYOUT FILE MEDIATYPE`: moves FILE into LAYOUT/blobs/sha256 and prints its descriptor.
add_blob() {
  local layout=$1 file=$2 media=$3 digest size
  digest=$(sha256 "$file")
  size=$(fsize "$file")
  mkdir -p "$layout/blobs/sha256"
  mv "$file" "$layout/blobs/sha256/$digest"
  jq -cn --arg m "$media" --arg d "sha256:$digest" --argjson s "$size" \
    '{mediaType: $m, digest: $d, size: $s}'
}

# The name CRI stores and looks images up under: docker.io/library/x:t for x:t, docker.io/a/b:t
# for a/b:t; a reference with a registry host stays as it is.
normalize_ref() {
  local ref=$1 first=${1%%/*}
  if [[ $ref != */* ]]; then
    echo "docker.io/library/$ref"
  elif [[ $first == *.* || $first == *:* || $first == localhost ]]; then
    echo "$ref"
  else
    echo "docker.io/$ref"
  fi
}

# `write_image REF ROOTFS OUTFILE CONFIGJSON`: one-layer OCI image layout of ROOTFS, tarred into
# OUTFILE. CONFIGJSON is the image config's "config" object (Entrypoint, Cmd, Env, Labels...).
write_image() {
  local ref=$1 rootfs=$2 outfile=$3 runconfig=$4
  local stage layout diff_id layer config manifest created full tag
  stage=$(mktemp -d "$WORK/layout.XXXXXX")
  layout="$stage/layout"
  mkdir -p "$layout"
  # Directory modes are normalised (files get theirs where they are created).
  find "$rootfs" -type d ! -name tmp -exec chmod 0755 {} +
  det_tar "$rootfs" "$stage/layer.tar"
  diff_id="sha256:$(sha256 "$stage/layer.tar")"
  gzip -n -6 "$stage/layer.tar"
  layer=$(add_blob "$layout" "$stage/layer.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)
  created=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
  jq -cn --arg created "$created" --arg diff "$diff_id" --argjson cfg "$runconfig" '{
      created: $created, architecture: "amd64", os: "linux", config: $cfg,
      rootfs: {type: "layers", diff_ids: [$diff]},
      history: [{created: $created, created_by: "scripts/images.sh"}]
    }' >"$stage/config.json"
  config=$(add_blob "$layout" "$stage/config.json" application/vnd.oci.image.config.v1+json)
  jq -cn --argjson config "$config" --argjson layer "$layer" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: $config, layers: [$layer]
    }' >"$stage/manifest.json"
  manifest=$(add_blob "$layout" "$stage/manifest.json" application/vnd.oci.image.manifest.v1+json)
  full=$(normalize_ref "$ref")
  tag=${ref##*:}
  # io.containerd.image.name is the name `ctr images import` gives the image (taken as it is);
  # org.opencontainers.image.ref.name is the OCI layout's tag.
  jq -cn --argjson m "$manifest" --arg name "$full" --arg tag "$tag" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [$m + {
        annotations: {"io.containerd.image.name": $name, "org.opencontainers.image.ref.name": $tag},
        platform: {architecture: "amd64", os: "linux"}
      }]
    }' >"$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  # docker-archive manifest too (docker/podman load); containerd's import prefers index.json.
  jq -cn --arg ref "$ref" --arg c "blobs/sha256/$(jq -r '.digest | sub("sha256:"; "")' <<<"$config")" \
    --arg l "blobs/sha256/$(jq -r '.digest | sub("sha256:"; "")' <<<"$layer")" \
    '[{Config: $c, RepoTags: [$ref], Layers: [$l]}]' >"$layout/manifest.json"
  find "$layout" -type d -exec chmod 0755 {} +
  find "$layout" -type f -exec chmod 0644 {} +
  det_tar "$layout" "$outfile.part"
  mv "$outfile.part" "$outfile"
  printf '%s\t%s\t%s\t%s\n' "$(basename "$outfile")" "$full" "$(jq -r .digest <<<"$manifest")" \
    "$(jq -r .size <<<"$layer")" >>"$WORK/IMAGES"
  rm -rf "$stage"
}

pkg_of() {  # the Debian package (name:arch version) that owns file $1 (tries the /usr-merged twin)
  local f=$1 cand pkg
  for cand in "$f" "${f/#\/usr\/lib\//\/lib\/}" "${f/#\/lib\//\/usr\/lib\/}"; do
    pkg=$(dpkg-query -S "$cand" 2>/dev/null | awk -F': ' -v p="$cand" '$2 == p {print $1; exit}')
    if [[ -n $pkg ]]; then
      echo "$pkg $(dpkg-query -W -f '${Version}' "$pkg")"
      return 0
    fi
  done
  die "no Debian package owns $f"
}

pkg_version() { dpkg-query -W -f '${Version}' "$1"; }

# "pkg=version pkg=version ..." of the PACKAGES lines on stdin (3rd/4th column), sorted, unique.
pkg_summary() { awk '{sub(/:.*/, "", $2); print $2 "=" $3}' | sort -u | paste -sd' ' -; }

env_path='["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]'

build_pause() {
  local root="$WORK/pause-root" pkgs
  need gcc gcc
  need "/usr/lib/$MULTIARCH/libc.a" libc6-dev
  mkdir -p "$root"
  # Compiled in a fixed directory with prefix maps: nothing of the build path reaches the binary.
  mkdir -p "$WORK/pause-src"
  cp "$here/pause.c" "$WORK/pause-src/pause.c"
  (cd "$WORK/pause-src" &&
    gcc -static -Os -s -Wall -Wextra -Werror -ffile-prefix-map="$WORK/pause-src"=. \
      -o "$root/pause" pause.c)
  chmod 0755 "$root/pause"
  pkgs="gcc=$(pkg_version gcc) libc6-dev=$(pkg_version libc6-dev)"
  write_image "$PAUSE_REF" "$root" "$OUT_TMP/pause_3.10.tar" "$(jq -cn --argjson env "$env_path" \
    --arg pkgs "$pkgs" '{Env: $env, Entrypoint: ["/pause"], WorkingDir: "/", Labels: {
      "org.opencontainers.image.title": "pause",
      "org.opencontainers.image.version": "3.10",
      "org.opencontainers.image.description": "ambient-cni sandbox image: static pause (scripts/images/pause.c)",
      "io.ambient-cni.debian-packages": $pkgs}}')"
}

build_app() {
  local root="$WORK/app-root" bb=/bin/busybox applet pkgs
  need "$bb" busybox-static
  dpkg-query -S "$bb" 2>/dev/null | grep -q '^busybox-static:' || die "$bb is not busybox-static's"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp"
  chmod 1777 "$root/tmp"
  install -m 0755 "$bb" "$root/bin/busybox"
  for applet in $("$bb" --list | sort -u); do
    [[ $applet == busybox || $applet == '[' || $applet == '[[' ]] && continue
    ln -s busybox "$root/bin/$applet"
  done
  for applet in sh nc wget httpd sleep cat echo; do
    [[ -L $root/bin/$applet ]] || die "busybox lacks the $applet applet"
  done
  [[ -L $root/bin/ip ]] || log "note: busybox has no ip applet"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
  pkgs="busybox-static=$(pkg_version busybox-static)"
  write_image "$APP_REF" "$root" "$OUT_TMP/app_0.1.0.tar" "$(jq -cn --argjson env "$env_path" \
    --arg pkgs "$pkgs" '{Env: $env, Cmd: ["/bin/sh"], WorkingDir: "/", Labels: {
      "org.opencontainers.image.title": "ambient-test/app",
      "org.opencontainers.image.version": "0.1.0",
      "org.opencontainers.image.description": "busybox-static test server/client image",
      "io.ambient-cni.debian-packages": $pkgs}}')"
}

# Absolute paths of every shared object the ELF files $@ need (ldd's transitive closure), plus the
# dynamic loader, one per line: "<path as the loader looks it up>".
ldd_closure() {
  local f out
  for f in "$@"; do
    out=$(ldd "$f" 2>&1) || die "ldd $f failed: $out"
    if grep -q 'not found' <<<"$out"; then die "ldd $f: $(grep 'not found' <<<"$out")"; fi
    awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$out"
  done | sort -u
}

find_lib() {  # the host path of shared library $1 (a soname)
  local d
  for d in "/lib/$MULTIARCH" "/usr/lib/$MULTIARCH" /lib64 /usr/lib64 /lib /usr/lib; do
    [[ -e $d/$1 ]] && { echo "$d/$1"; return 0; }
  done
  die "$1 not found on this host (install its Debian package)"
}

# `copy_closure ROOT PKGLIST ELF...`: copies into ROOT/usr/lib/$MULTIARCH every shared library the
# ELF files (already inside ROOT) need, plus the extra host libraries in $EXTRA_LIBS (dlopen()ed:
# ldd cannot see them), and the dynamic loader at the first ELF's PT_INTERP path; appends
# "<file in image> <package> <version>" per copied file to PKGLIST.
copy_closure() {
  local root=$1 pkglist=$2 libdir real name interp lib
  shift 2
  libdir="$root/usr/lib/$MULTIARCH"
  mkdir -p "$libdir" "$root/usr/lib64"
  [[ -e $root/lib ]] || ln -s usr/lib "$root/lib"
  [[ -e $root/lib64 ]] || ln -s usr/lib64 "$root/lib64"
  while read -r lib; do
    real=$(readlink -f "$lib")
    case "$real" in
      /usr/lib/$MULTIARCH/* | /lib/$MULTIARCH/*) ;;
      *) die "$lib resolves to $real, outside the $MULTIARCH library directories" ;;
    esac
    name=$(basename "$real")
    if [[ ! -e $libdir/$name ]]; then
      cp "$real" "$libdir/$name"
      chmod 0644 "$libdir/$name"
      echo "/usr/lib/$MULTIARCH/$name $(pkg_of "$real")" >>"$pkglist"
    fi
    if [[ $(basename "$lib") != "$name" && ! -e $libdir/$(basename "$lib") ]]; then
      ln -s "$name" "$libdir/$(basename "$lib")"
    fi
  done < <({
    printf '%s\n' "${EXTRA_LIBS[@]}"
    ldd_closure "$@" "${EXTRA_LIBS[@]}"
  } | sed '/^$/d' | sort -u)
  # The loader at the binaries' PT_INTERP path (/lib64 -> usr/lib64 here, as in Debian).
  interp=$(readelf -l "$1" | sed -nE 's/.*\[Requesting program interpreter: (.*)\]/\1/p')
  [[ $interp == /lib64/* ]] || die "unexpected program interpreter $interp"
  real=$(readlink -f "$interp")
  [[ -e $libdir/$(basename "$real") ]] || die "loader $real not in the ldd closure"
  chmod 0755 "$libdir/$(basename "$real")"
  [[ -e $root/usr/lib64/$(basename "$interp") ]] ||
    ln -s "../lib/$MULTIARCH/$(basename "$real")" "$root/usr/lib64/$(basename "$interp")"
}

# `write_packages ROOT/usr/share/X/PACKAGES PKGLIST`: the file list, headed, sorted.
write_packages() {
  {
    echo "# The shared libraries of this image, copied from these Debian packages"
    echo "# (host: Debian $(cat /etc/debian_version 2>/dev/null || echo unknown)): file package version"
    sort "$2"
  } >"$1"
  chmod 0644 "$1"
}

build_node() {
  local root="$WORK/node-root" b name pkglist pkgs EXTRA_LIBS=()
  for b in ambient-cni-node ambient-cni; do
    [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b missing (scripts/build.sh release, or --bin-dir)"
  done
  need ldd libc-bin
  need readelf binutils
  ((STRIP)) && need strip binutils
  mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/usr/share/ambient-cni"
  chmod 1777 "$root/tmp"
  for b in ambient-cni-node ambient-cni; do
    if ((STRIP)); then
      strip --strip-debug -o "$root/usr/local/bin/$b" "$BIN_DIR/$b"
    else
      cp "$BIN_DIR/$b" "$root/usr/local/bin/$b"
    fi
    chmod 0755 "$root/usr/local/bin/$b"
  done
  for name in "${DLOPEN_LIBS[@]}"; do EXTRA_LIBS+=("$(find_lib "$name")"); done
  pkglist="$WORK/PACKAGES"
  : >"$pkglist"
  copy_closure "$root" "$pkglist" "$root/usr/local/bin/ambient-cni-node" "$root/usr/local/bin/ambient-cni"
  write_packages "$root/usr/share/ambient-cni/PACKAGES" "$pkglist"
  pkgs=$(pkg_summary <"$pkglist")
  printf 'root:x:0:0:root:/root:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
  write_image "$NODE_NAME:$TAG" "$root" "$OUT_TMP/${NODE_NAME}_$TAG.tar" "$(jq -cn \
    --argjson env "$env_path" --arg tag "$TAG" --arg pkgs "$pkgs" '{Env: $env,
      Entrypoint: ["/usr/local/bin/ambient-cni-node"], Cmd: ["run"], WorkingDir: "/", Labels: {
      "org.opencontainers.image.title": "ambient-cni-node",
      "org.opencontainers.image.version": $tag,
      "org.opencontainers.image.description": "ambient-cni node agent and CNI plugin",
      "io.ambient-cni.debian-packages": $pkgs}}')"
}

# Istio's install-cni image, for the side-by-side benchmark (never part of our product): what
# cni/deployments/kubernetes/Dockerfile.install-cni puts on Istio's base image — istio-cni in
# /opt/cni/bin, install-cni in /usr/local/bin, PATH with /opt/cni/bin, WORKDIR /opt/cni/bin — on a
# root file system holding what its node agent executes: Debian's iptables (nft and legacy
# backends, every xtables extension), nft (its nftables mode, and the detection that runs
# `nft --json list tables`) and nsenter, with their libraries.
ISTIO_CNI_REF_NAME=istio/install-cni
ISTIO_IMAGE_TOOLS=(/usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi /usr/sbin/nft /usr/bin/nsenter)
build_istio_cni() {
  local root="$WORK/istio-root" bindir=$1 tag=$2 f b pkglist pkgs ext EXTRA_LIBS=()
  for b in istio-cni install-cni; do
    [[ -x $bindir/$b ]] || die "$bindir/$b missing (scripts/peers.sh istio-cni)"
  done
  need /usr/sbin/xtables-nft-multi iptables
  need /usr/sbin/nft nftables
  need /usr/bin/nsenter util-linux
  need ldd libc-bin
  need readelf binutils
  mkdir -p "$root/usr/local/bin" "$root/opt/cni/bin" "$root/usr/sbin" "$root/usr/bin" "$root/etc" \
    "$root/tmp" "$root/run" "$root/var/run" "$root/usr/share/istio-cni-bench" \
    "$root/usr/lib/$MULTIARCH/xtables"
  chmod 1777 "$root/tmp"
  install -m 0755 "$bindir/istio-cni" "$root/opt/cni/bin/istio-cni"
  install -m 0755 "$bindir/install-cni" "$root/usr/local/bin/install-cni"
  for f in "${ISTIO_IMAGE_TOOLS[@]}"; do install -m 0755 "$f" "$root$f"; done
  # The names Istio's iptables detection looks for, as Debian's package links them (iptables and
  # ip6tables default to the nft backend, Debian's alternative).
  for b in iptables ip6tables; do
    for f in "" -save -restore; do
      ln -s xtables-nft-multi "$root/usr/sbin/$b-nft$f"
      ln -s xtables-legacy-multi "$root/usr/sbin/$b-legacy$f"
      ln -s xtables-nft-multi "$root/usr/sbin/$b$f"
    done
  done
  # xtables extensions are dlopen()ed by name: all of Debian's, and whatever they link.
  for ext in /usr/lib/$MULTIARCH/xtables/*.so; do
    install -m 0644 "$ext" "$root$ext"
    echo "$ext $(pkg_of "$ext")" >>"$WORK/ISTIO-EXT"
  done
  pkglist="$WORK/ISTIO-PACKAGES"
  : >"$pkglist"
  EXTRA_LIBS=()
  copy_closure "$root" "$pkglist" "${ISTIO_IMAGE_TOOLS[@]/#/$root}" "$root"/usr/lib/$MULTIARCH/xtables/*.so
  for f in "${ISTIO_IMAGE_TOOLS[@]}"; do echo "$f $(pkg_of "$f")" >>"$pkglist"; done
  cat "$WORK/ISTIO-EXT" >>"$pkglist"
  write_packages "$root/usr/share/istio-cni-bench/PACKAGES" "$pkglist"
  pkgs=$(pkg_summary <"$pkglist")
  printf 'root:x:0:0:root:/root:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
  write_image "$ISTIO_CNI_REF_NAME:$tag" "$root" "$OUT_TMP/install-cni_$tag.tar" "$(jq -cn \
    --arg tag "$tag" --arg pkgs "$pkgs" '{
      Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/cni/bin"],
      Cmd: ["/usr/local/bin/install-cni"], WorkingDir: "/opt/cni/bin", Labels: {
      "org.opencontainers.image.title": "istio/install-cni",
      "org.opencontainers.image.version": $tag,
      "org.opencontainers.image.description": "Istio CNI plugin installer (built from istio.io/istio by scripts/peers.sh istio-cni; benchmark peer)",
      "io.ambient-cni.debian-packages": $pkgs}}')"
}

cmd_build() {
  OUT="$repo/build/images" BIN_DIR="$repo/build/bin" TAG="" STRIP=1
  while (($#)); do
    case "$1" in
      --out) OUT=${2:?--out DIR}; shift 2 ;;
      --bin-dir) BIN_DIR=${2:?--bin-dir DIR}; shift 2 ;;
      --tag) TAG=${2:?--tag TAG}; shift 2 ;;
      --strip) STRIP=1; shift ;;
      --no-strip) STRIP=0; shift ;;
      -h | --help) usage 0 ;;
      *) die "build: unknown argument $1" ;;
    esac
  done
  [[ -n $TAG ]] || TAG=$(project_version)
  [[ $TAG =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "bad tag '$TAG'"
  EPOCH=${SOURCE_DATE_EPOCH:-0}
  [[ $EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be an integer"
  BIN_DIR=$(cd "$BIN_DIR" 2>/dev/null && pwd) || die "no bin dir $BIN_DIR"
  need jq jq
  need tar tar
  need gzip gzip
  need dpkg-query dpkg
  mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/ambient-images.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  OUT_TMP="$WORK/out"
  mkdir -p "$OUT_TMP"
  : >"$WORK/IMAGES"
  build_pause
  build_app
  build_node
  mv -f "$OUT_TMP"/*.tar "$OUT/"
  {
    printf '# file\timage\tmanifest digest\tcompressed layer bytes\n'
    cat "$WORK/IMAGES"
  } >"$OUT/IMAGES"
  cmd_list --out "$OUT"
}

# `istio-cni [--out DIR] [--bin-dir DIR] [--tag TAG]`: Istio's install-cni image alone, into its
# own DIR (default build/images-istio) with its own IMAGES, so `import --out DIR` loads just it.
cmd_istio_cni() {
  local out="$repo/build/images-istio" bindir="" tag=""
  while (($#)); do
    case "$1" in
      --out) out=${2:?--out DIR}; shift 2 ;;
      --bin-dir) bindir=${2:?--bin-dir DIR}; shift 2 ;;
      --tag) tag=${2:?--tag TAG}; shift 2 ;;
      -h | --help) usage 0 ;;
      *) die "istio-cni: unknown argument $1" ;;
    esac
  done
  [[ -n $bindir ]] || bindir=$("$repo/scripts/peers.sh" path istio-cni) || die "build Istio's CNI first: scripts/peers.sh istio-cni"
  [[ -n $tag ]] || tag=$(sed -n 's/^version: v0.0.0-[0-9]*-\(.*\)/1.31-dev-\1/p' "$bindir/../BUILD-INFO")
  [[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "bad tag '$tag'"
  EPOCH=${SOURCE_DATE_EPOCH:-0}
  need jq jq
  need tar tar
  need gzip gzip
  need dpkg-query dpkg
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/ambient-images.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  OUT_TMP="$WORK/out"
  mkdir -p "$OUT_TMP"
  : >"$WORK/IMAGES"
  build_istio_cni "$bindir" "$tag"
  mv -f "$OUT_TMP"/*.tar "$out/"
  {
    printf '# file\timage\tmanifest digest\tcompressed layer bytes\n'
    cat "$WORK/IMAGES"
  } >"$out/IMAGES"
  cmd_list --out "$out"
}

cmd_list() {
  local out="$repo/build/images" file ref digest layer
  while (($#)); do
    case "$1" in
      --out) out=${2:?--out DIR}; shift 2 ;;
      *) die "list: unknown argument $1" ;;
    esac
  done
  [[ -f $out/IMAGES ]] || die "no $out/IMAGES: run scripts/images.sh build first"
  while IFS=$'\t' read -r file ref digest layer; do
    [[ $file == \#* ]] && continue
    printf '%-44s %s  %s (%s bytes, layer %s bytes)\n' "$ref" "$digest" "$out/$file" \
      "$(fsize "$out/$file")" "$layer"
  done <"$out/IMAGES"
}

cmd_import() {
  local out="$repo/build/images" address=${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}
  local ns=k8s.io snapshotter="" file ref digest layer got args=()
  while (($#)); do
    case "$1" in
      --out) out=${2:?--out DIR}; shift 2 ;;
      --address | -a) address=${2:?--address SOCK}; shift 2 ;;
      --namespace | -n) ns=${2:?--namespace NS}; shift 2 ;;
      --snapshotter) snapshotter=${2:?--snapshotter NAME}; shift 2 ;;
      -h | --help) usage 0 ;;
      *) die "import: unknown argument $1" ;;
    esac
  done
  command -v ctr >/dev/null || die "ctr missing (Debian package containerd)"
  [[ -S $address ]] || die "no containerd socket at $address"
  [[ -f $out/IMAGES ]] || die "no $out/IMAGES: run scripts/images.sh build first"
  [[ -n $snapshotter ]] && args+=(--snapshotter "$snapshotter")
  while IFS=$'\t' read -r file ref digest layer; do
    [[ $file == \#* ]] && continue
    [[ -f $out/$file ]] || die "$out/$file missing"
    log "importing $ref from $out/$file"
    ctr -a "$address" -n "$ns" images import "${args[@]}" "$out/$file" >&2
    got=$(ctr -a "$address" -n "$ns" images ls | awk -v r="$ref" '$1 == r {print $3}')
    [[ $got == "$digest" ]] || die "after import, $ref is '${got:-absent}', expected $digest"
    echo "$ref $digest"
  done <"$out/IMAGES"
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  import) shift; cmd_import "$@" ;;
  list) shift; cmd_list "$@" ;;
  istio-cni) shift; cmd_istio_cni "$@" ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
