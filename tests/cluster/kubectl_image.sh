#!/usr/bin/env bash
# The image the chart's uninstall hook runs, for scripts/cluster.sh's node (no registry): Kubernetes'
# own kubectl image as its build makes it (build/server-image/kubectl: the static kubectl at
# /bin/kubectl, ENTRYPOINT /bin/kubectl), from the kubectl that scripts/peers.sh kubernetes built,
# under the name the chart's uninstallHook.image names, imported into the node's containerd.
#
#   tests/cluster/kubectl_image.sh REF KUBECTL CONTAINERD_SOCKET
#
# One layer, fixed mtimes and owners: the same kubectl gives the same digest.
set -euo pipefail
export LC_ALL=C
ref=${1:?image reference, e.g. registry.k8s.io/kubectl:v1.34.4}
kubectl=${2:?path of a static kubectl}
sock=${3:?containerd socket}
die() { echo "kubectl_image.sh: $*" >&2; exit 1; }
for c in jq tar gzip sha256sum ctr; do command -v "$c" >/dev/null || die "$c missing"; done
[[ -x $kubectl ]] || die "$kubectl is not executable"
file -b "$kubectl" | grep -q 'statically linked' || die "$kubectl is not statically linked"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/layout/blobs/sha256"
install -m 0755 "$kubectl" "$work/rootfs/bin/kubectl"
blob() {  # FILE MEDIATYPE → descriptor; the file moves into the layout
  local d s
  d=$(sha256sum "$1" | cut -d' ' -f1)
  s=$(stat -c %s "$1")
  mv "$1" "$work/layout/blobs/sha256/$d"
  jq -cn --arg m "$2" --arg d "sha256:$d" --argjson s "$s" '{mediaType: $m, digest: $d, size: $s}'
}
tar --create --file="$work/layer.tar" -C "$work/rootfs" --sort=name --mtime=@0 --owner=0 --group=0 \
  --numeric-owner --format=posix --pax-option=delete=atime,delete=ctime bin
diff_id="sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
gzip -n "$work/layer.tar"
layer=$(blob "$work/layer.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)
jq -cn --arg diff "$diff_id" '{
    created: "1970-01-01T00:00:00Z", architecture: "amd64", os: "linux",
    config: {Entrypoint: ["/bin/kubectl"], Env: ["PATH=/bin"]},
    rootfs: {type: "layers", diff_ids: [$diff]}
  }' >"$work/config.json"
config=$(blob "$work/config.json" application/vnd.oci.image.config.v1+json)
jq -cn --argjson c "$config" --argjson l "$layer" '{schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json", config: $c, layers: [$l]}' \
  >"$work/manifest.json"
manifest=$(blob "$work/manifest.json" application/vnd.oci.image.manifest.v1+json)
jq -cn --argjson m "$manifest" --arg name "$ref" --arg tag "${ref##*:}" '{schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [$m + {annotations: {"io.containerd.image.name": $name,
                                    "org.opencontainers.image.ref.name": $tag},
                      platform: {architecture: "amd64", os: "linux"}}]}' >"$work/layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
tar --create --file="$work/image.tar" -C "$work/layout" --sort=name --mtime=@0 --owner=0 --group=0 \
  --numeric-owner blobs index.json oci-layout
ctr -a "$sock" -n k8s.io images import "$work/image.tar" >&2
ctr -a "$sock" -n k8s.io images ls -q | grep -qxF "$ref" || die "$ref is not in containerd after the import"
echo "$ref $(jq -r .digest <<<"$manifest")"
