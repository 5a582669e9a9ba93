#!/usr/bin/env bash
# A real single-node Kubernetes cluster (v1.34 control plane, kubelet, containerd) whose node lives
# in its own network namespace and mount namespace, for end-to-end tests of ambient-cni.
#
#   scripts/cluster.sh up               build/reuse the binaries, start everything, wait until usable
#   scripts/cluster.sh down             stop and remove everything (also after a failed up; idempotent)
#   scripts/cluster.sh status           what runs
#   scripts/cluster.sh kubectl ARGS...  kubectl as cluster-admin, run inside the node's netns
#   scripts/cluster.sh node CMD...      run CMD inside the node's network + mount namespaces
#   scripts/cluster.sh images [--build] (re)import the test images into the node's containerd
#                                       (--build: run scripts/images.sh build first)
#   scripts/cluster.sh reboot           the node reboots: kubelet, containerd and every pod stop,
#                                       its /run (pod netns, sockets, our run dir) and firewall
#                                       are wiped, containerd and kubelet start again; the
#                                       control plane keeps running
#   scripts/cluster.sh pid1             give the node a PID 1 of its own: a process in the node's
#                                       netns whose /proc/<pid> is bind-mounted over /proc/1 in the
#                                       node's mount namespace (components that find the host
#                                       netns through /proc/1/ns/net, such as Istio's CNI agent,
#                                       find the node's; this machine's own PID 1 is not readable)
#   scripts/cluster.sh kubelet stop|start
#                                       stop the kubelet alone (running pods go on under
#                                       containerd; nothing starts, stops or probes pods) or
#                                       start it again
#
# Environment: AMBIENT_CLUSTER_DIR (state dir, default /var/lib/ambient-cni/cluster),
# AMBIENT_CLUSTER_NICE (nice level of every component, default 5), AMBIENT_CLUSTER_TIMEOUT
# (seconds each wait may take, default 180). Needs root.
#
# What the cluster is:
# - Network: netns "ambient-node" (ip netns add): lo, "node0" with the node IP 10.77.0.1/24 and
#   the default route (a veth whose peer node0-peer stays in the netns: no dummy driver here),
#   and, once pods run, the bridge cni0 (10.244.0.1/24) with their veths.
#   Nothing is added to the machine's own netns, routes or rules.
# - Mount namespace: persistent at $state/ns/mnt. Inside it, the node's own directories are bind
#   mounts of $state/node/<dir>: /etc/cni/net.d, /opt/cni/bin, /var/lib/kubelet,
#   /var/lib/containerd, /var/lib/cni, /var/log/pods, /var/log/containers, /run/containerd,
#   /run/netns (= /var/run/netns, where containerd binds pod netns cni-<uuid>), /run/ztunnel,
#   /run/ambient-cni (the /run ones but containerd's on a tmpfs of the node's, as /run is on a
#   real node); then
#   `mount --make-rshared /`, so hostPath volumes with mountPropagation
#   HostToContainer (the DaemonSet's /var/run/netns) work unchanged. A mount point missing on the
#   machine (/opt/cni, /var/lib/kubelet...) is never created on the machine's file system: its
#   nearest existing parent (/opt, /var/lib, /var/log, /run) is covered, in the node only, by an
#   overlay whose upper layer is a tmpfs, and the mount point is made there.
# - Every component runs via `nsenter --mount=$state/ns/mnt --net=/run/netns/ambient-node`:
#   etcd (127.0.0.1:2379, data in $state/etcd), kube-apiserver (https://10.77.0.1:6443,
#   Node,RBAC, NodeRestriction), kube-controller-manager, kube-scheduler, containerd (runc,
#   cgroupfs, CRI), kubelet (node "ambient-node"). Logs: $state/logs/<component>.log; pid files:
#   $state/run/<component>.pid. Pod cgroups: /sys/fs/cgroup/<hierarchy>/ambient-node/...
# - Primary CNI: /etc/cni/net.d/10-bridge.conflist (bridge cni0 + host-local 10.244.0.0/24 +
#   portmap), Debian's containernetworking-plugins copied into the node's /opt/cni/bin; both
#   directories are writable (ambient-cni's DaemonSet installs itself into them).
# - No kube-proxy and no CoreDNS: Service VIPs (10.96.0.0/16) do not route and there is no cluster
#   DNS. Pods talk to pod IPs; pods and hostNetwork pods reach the API at https://10.77.0.1:6443
#   (in-cluster clients: set KUBERNETES_SERVICE_HOST=10.77.0.1 KUBERNETES_SERVICE_PORT=6443).
# - Images: no registry. `up` imports registry.k8s.io/pause:3.10 and docker.io/ambient-test/app:0.1.0
#   (scripts/images.sh), plus docker.io/library/ambient-cni-node:<ver> when build/bin has it.
#   ambient-cni-node is (re)built with scripts/images.sh build (into build/images) when build/bin
#   is newer than its image; without build/bin, pause + app are built from stand-in binaries.
# - kubelet wants vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1 and would write
#   them machine-wide (or refuse to start with protectKernelDefaults): in the node's mount
#   namespace, files holding those values are bind-mounted over the /proc/sys entries that differ.
#   The machine's sysctls are never written.
# - Binaries: scripts/peers.sh kubernetes|etcd (built once into the peers cache). kubectl is that
#   release's own (v1.34.4); the kubectl 1.32 on the PATH is used only if it is missing.
# - Files for tests: $state/admin.kubeconfig (cluster-admin), $state/pki/ca.crt, $state/env.
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here="$repo/scripts/cluster"
self="$repo/scripts/cluster.sh"

STATE=$(realpath -m "${AMBIENT_CLUSTER_DIR:-/var/lib/ambient-cni/cluster}")
export AMBIENT_CLUSTER_DIR=$STATE
NICE=${AMBIENT_CLUSTER_NICE:-5}
TIMEOUT=${AMBIENT_CLUSTER_TIMEOUT:-180}

NETNS=ambient-node
NODE_NAME=ambient-node
NODE_IP=10.77.0.1
NODE_PREFIX=24
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
POD_CIDR=10.244.0.0/24
CGROUP_ROOT=ambient-node
API_URL="https://$NODE_IP:6443"
PKI="$STATE/pki"
MNTNS="$STATE/ns/mnt"
NETNS_PATH="/run/netns/$NETNS"
APT_PACKAGES=(containerd runc containernetworking-plugins openssl iproute2 util-linux curl iptables)
# Start order; `down` stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet)
# The node's own directories: "<dir under $state/node>:<path inside the node>".
NODE_DIRS=(
  etc-cni-net.d:/etc/cni/net.d
  opt-cni-bin:/opt/cni/bin
  var-lib-kubelet:/var/lib/kubelet
  var-lib-containerd:/var/lib/containerd
  var-lib-cni:/var/lib/cni
  var-log-pods:/var/log/pods
  var-log-containers:/var/log/containers
  run-containerd:/run/containerd
  run-netns:/run/netns
  run-ztunnel:/run/ztunnel
  run-ambient-cni:/run/ambient-cni
)
# The kernel settings kubelet insists on (pkg/kubelet/cm setupKernelTunables). With
# protectKernelDefaults=false it would write them machine-wide; the node sees these values instead
# (files bind-mounted over /proc/sys/... in its mount namespace only).
KUBELET_SYSCTLS=(vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1
  kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000)

say() { echo "==> cluster: $*" >&2; }
warn() { echo "cluster: warning: $*" >&2; }
die() { echo "cluster: $*" >&2; exit 1; }
usage() { sed -n '5,24p' "$self" | sed 's/^# *//' >&2; exit "${1:-2}"; }

need_root() { [[ $EUID -eq 0 ]] || die "run as root (namespaces, mounts, cgroups)"; }

# --- namespaces ---------------------------------------------------------------------------------
netns_exists() { [[ -e $NETNS_PATH ]] && mountpoint -q "$NETNS_PATH" 2>/dev/null; }
mntns_exists() { [[ -e $MNTNS ]] && mountpoint -q "$MNTNS" 2>/dev/null; }
in_node() { nsenter --mount="$MNTNS" --net="$NETNS_PATH" -- "$@"; }
in_net() { nsenter --net="$NETNS_PATH" -- "$@"; }

load_env() {  # the binaries up chose (kubectl for the kubectl subcommand)
  KBIN="" EBIN="" KUBECTL=""
  # shellcheck disable=SC1091
  [[ -f $STATE/env ]] && source "$STATE/env"
  if [[ -z $KUBECTL ]]; then
    if [[ -n $KBIN && -x $KBIN/kubectl ]]; then KUBECTL=$KBIN/kubectl; else KUBECTL=$(command -v kubectl || true); fi
  fi
  [[ -n $KUBECTL ]] || die "no kubectl (scripts/peers.sh kubernetes builds one)"
}

kctl() { in_net "$KUBECTL" --kubeconfig "$STATE/admin.kubeconfig" "$@"; }

# --- timing -------------------------------------------------------------------------------------
now_us() { echo "${EPOCHREALTIME/./}"; }
PHASE="" PHASE_T0=0 UP_T0=0 CURRENT="" TIMINGS=()
phase() {
  phase_end
  PHASE=$1 PHASE_T0=$(now_us)
  say "$PHASE..."
}
phase_end() {
  [[ -n $PHASE ]] || return 0
  local dt=$(( $(now_us) - PHASE_T0 ))
  TIMINGS+=("$(printf '%-30s %6.2f s' "$PHASE" "$(awk -v u="$dt" 'BEGIN{print u/1e6}')")")
  say "$PHASE done in $(awk -v u="$dt" 'BEGIN{printf "%.2f", u/1e6}') s"
  PHASE=""
}

# `wait_for WHAT COMPONENT CMD...`: retries CMD (quietly) until it succeeds, failing when TIMEOUT
# passes or COMPONENT's process dies.
wait_for() {
  local what=$1 comp=$2 t0=$SECONDS pid
  shift 2
  while ! "$@" >/dev/null 2>&1; do
    if [[ -n $comp ]]; then
      pid=$(cat "$STATE/run/$comp.pid" 2>/dev/null || true)
      [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || die "$comp exited while waiting for $what"
    fi
    ((SECONDS - t0 < TIMEOUT)) || die "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.5
  done
}

# --- prerequisites ------------------------------------------------------------------------------
ensure_packages() {
  local p missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    die "apt-get install ${missing[*]} failed"
}

ensure_binaries() {
  local b
  CURRENT=peers
  KBIN=$("$repo/scripts/peers.sh" kubernetes | tail -n1) || die "scripts/peers.sh kubernetes failed"
  EBIN=$("$repo/scripts/peers.sh" etcd | tail -n1) || die "scripts/peers.sh etcd failed"
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
    [[ -x $KBIN/$b ]] || die "$KBIN/$b missing"
  done
  [[ -x $EBIN/etcd ]] || die "$EBIN/etcd missing"
  if [[ -x $KBIN/kubectl ]]; then
    # kubectl of the same release (the one on the PATH, 1.32, is outside the +/-1 skew of 1.34).
    KUBECTL=$KBIN/kubectl
  else
    KUBECTL=$(command -v kubectl) || die "no kubectl"
  fi
}

# --- PKI ----------------------------------------------------------------------------------------
pki_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 0600 "$1"; }
# `pki_cert NAME SUBJECT EXT [SAN]`: key + certificate signed by the CA.
pki_cert() {
  local name=$1 subj=$2 ext=$3
  pki_key "$PKI/$name.key"
  # (openssl.cnf reads $SAN wherever it is loaded.)
  SAN=${4:-DNS:unused} openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" \
    -config "$here/openssl.cnf"
  SAN=${4:-DNS:unused} openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$here/openssl.cnf" -extensions "$ext" \
    -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr"
}

make_pki() {
  mkdir -p "$PKI"
  chmod 0700 "$PKI"
  pki_key "$PKI/ca.key"
  SAN=DNS:unused openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=ambient-cni-cluster-ca" -days 3650 \
    -sha256 -config "$here/openssl.cnf" -extensions ca -out "$PKI/ca.crt"
  pki_cert apiserver "/CN=kube-apiserver" server \
    "IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
  pki_cert kubelet-serving "/CN=system:node:$NODE_NAME/O=system:nodes" server "IP:$NODE_IP,DNS:$NODE_NAME"
  pki_cert admin "/CN=kubernetes-admin/O=system:masters" client
  pki_cert kubelet "/CN=system:node:$NODE_NAME/O=system:nodes" client
  pki_cert controller-manager "/CN=system:kube-controller-manager" client
  pki_cert scheduler "/CN=system:kube-scheduler" client
  # The apiserver's identity towards kubelets (logs, exec, port-forward): kubelet authorizes it
  # with a SubjectAccessReview, which system:masters passes.
  pki_cert apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client/O=system:masters" client
  pki_key "$PKI/sa.key"
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  rm -f "$PKI/ca.srl"
}

# `kubeconfig FILE CERTNAME`: a self-contained kubeconfig for $API_URL with that client cert.
kubeconfig() {
  local file=$1 name=$2
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ambient
  cluster:
    server: $API_URL
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$name.crt")
    client-key-data: $(base64 -w0 "$PKI/$name.key")
contexts:
- name: ambient
  context:
    cluster: ambient
    user: $name
current-context: ambient
EOF
  chmod 0600 "$file"
}

# --- node namespaces ----------------------------------------------------------------------------
setup_netns() {
  ip netns add "$NETNS"
  ip -n "$NETNS" link set lo up
  # This kernel has no dummy driver (and no modprobe): node0 is one end of a veth pair whose
  # other end (node0-peer) stays in the same netns, so the link has carrier.
  ip -n "$NETNS" link add node0 type veth peer name node0-peer
  ip -n "$NETNS" link set node0-peer up
  ip -n "$NETNS" addr add "$NODE_IP/$NODE_PREFIX" dev node0
  ip -n "$NETNS" link set node0 up
  # kube-apiserver and kubelet look for a default route to pick addresses.
  ip -n "$NETNS" route add default dev node0
}

setup_mntns() {
  local d s v
  for d in "${NODE_DIRS[@]}"; do mkdir -p "$STATE/node/${d%%:*}"; done
  mkdir -p "$STATE/node/opt-containerd" "$STATE/node/sysctl" "$STATE/node/ovl" "$STATE/ns"
  for s in "${KUBELET_SYSCTLS[@]}"; do
    mkdir -p "$STATE/node/sysctl/$(dirname "${s%%=*}")"
    echo "${s#*=}" >"$STATE/node/sysctl/${s%%=*}"
  done
  # A namespace file can only be bind-mounted on a private mount.
  mount --bind "$STATE/ns" "$STATE/ns"
  mount --make-private "$STATE/ns"
  touch "$MNTNS"
  unshare --mount="$MNTNS" --propagation private true
  nsenter --mount="$MNTNS" -- "$self" __node-mounts
}

# Runs inside the new mount namespace (everything here is private to it).
node_mounts() {
  local state=$STATE d p a m s cur want
  local -a overlays=() covered=()
  # Which missing mount points need an overlay on their nearest existing parent.
  for d in "${NODE_DIRS[@]}"; do
    p=${d#*:}
    [[ -d $p ]] && continue
    a=$p
    while [[ ! -e $a ]]; do a=$(dirname "$a"); done
    [[ $a != / ]] || die "node: $p has no parent to overlay"
    [[ -d $a ]] || die "node: $a is not a directory"
    [[ " ${overlays[*]} " == *" $a "* ]] || overlays+=("$a")
  done
  # Mounts copied from the machine that would end up hidden under our mounts (the machine's
  # /run/netns, our $state/ns): unmounted here, so each of the node's paths has one mount.
  for d in "${NODE_DIRS[@]}"; do covered+=("${d#*:}"); done
  covered+=("${overlays[@]}" "$state/ns")
  while read -r m; do
    for p in "${covered[@]}"; do
      if [[ $m == "$p" || $m == "$p"/* ]]; then umount -l "$m" 2>/dev/null || true; break; fi
    done
  done < <(findmnt -rn -o TARGET | sort -r)
  exec 9<"$state"
  mount -t tmpfs -o mode=0755,size=64m ambient-node-ovl "$state/node/ovl"
  # Upper layers named through a descriptor: once /var/lib is overlaid, $state/node/ovl no longer
  # leads to the tmpfs.
  exec 8<"$state/node/ovl"
  for a in "${overlays[@]}"; do
    m="/proc/self/fd/8/$(echo "${a#/}" | tr / -)"
    mkdir -p "$m/upper" "$m/work"
    mount -t overlay "ambient-node-ovl" -o "lowerdir=$a,upperdir=$m/upper,workdir=$m/work" "$a"
  done
  exec 8<&-
  # The state dir again as the real directory (it may be under an overlaid /var/lib).
  # (-c: mount(8) would otherwise turn /proc/self/fd/9 back into the path, now overlaid.)
  mount -c --rbind /proc/self/fd/9 "$state"
  exec 9<&-
  for d in "${NODE_DIRS[@]}"; do
    p=${d#*:}
    mkdir -p "$p"
    # /run is a tmpfs on a real node (what the agents write there, an fsync included, costs
    # what it costs there); inside the node only, so the machine's mount table is untouched.
    # containerd's stays the state dir's: tests reach its socket from the machine.
    [[ ${d%%:*} == run-* && ${d%%:*} != run-containerd ]] && mount -t tmpfs -o mode=0755,size=256m "ambient-node-${d%%:*}" "$state/node/${d%%:*}"
    mount --bind "$state/node/${d%%:*}" "$p"
  done
  for s in "${KUBELET_SYSCTLS[@]}"; do
    cur=$(cat "/proc/sys/${s%%=*}" 2>/dev/null) || continue
    want=${s#*=}
    [[ $cur == "$want" ]] || mount --bind "$state/node/sysctl/${s%%=*}" "/proc/sys/${s%%=*}"
  done
  mount --make-rshared /
}

# --- cgroups ------------------------------------------------------------------------------------
cgroup_mounts() { awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts; }
cgroup_v1_mounts() { awk '$3 == "cgroup" {print $2}' /proc/self/mounts; }

setup_cgroups() {
  local m
  while read -r m; do
    mkdir -p "$m/$CGROUP_ROOT"
    if [[ -f $m/cpuset.cpus ]]; then
      cat "$m/cpuset.cpus" >"$m/$CGROUP_ROOT/cpuset.cpus"
      cat "$m/cpuset.mems" >"$m/$CGROUP_ROOT/cpuset.mems"
    fi
  done < <(cgroup_v1_mounts)
}

cgroup_pids() {
  local m
  while read -r m; do
    [[ -d $m/$CGROUP_ROOT ]] || continue
    find "$m/$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null || true
  done < <(cgroup_mounts)
}

remove_cgroups() {
  local m left=0
  while read -r m; do
    [[ -d $m/$CGROUP_ROOT ]] || continue
    find "$m/$CGROUP_ROOT" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d $m/$CGROUP_ROOT ]] && { warn "could not remove $m/$CGROUP_ROOT"; left=1; }
  done < <(cgroup_mounts)
  return $left
}

# --- components ---------------------------------------------------------------------------------
# `start NAME CMD...`: runs CMD in the node's namespaces, detached, logging to $state/logs/NAME.log.
start() {
  local name=$1 pid
  shift
  CURRENT=$name
  setsid nsenter --mount="$MNTNS" --net="$NETNS_PATH" -- nice -n "$NICE" "$@" \
    >>"$STATE/logs/$name.log" 2>&1 </dev/null &
  pid=$!
  disown "$pid"
  echo "$pid" >"$STATE/run/$name.pid"
}

start_etcd() {
  mkdir -p "$STATE/etcd"
  chmod 0700 "$STATE/etcd"
  start etcd "$EBIN/etcd" --name "$NODE_NAME" --data-dir "$STATE/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --initial-cluster-state new \
    --unsafe-no-fsync --snapshot-count 10000 --log-level warn
  wait_for "etcd /health" etcd in_net curl -sf http://127.0.0.1:2379/health
}

start_apiserver() {
  start kube-apiserver "$KBIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$NODE_IP" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --profiling=false --event-ttl=1h
  wait_for "kube-apiserver /readyz" kube-apiserver in_net curl -sf --cacert "$PKI/ca.crt" \
    --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$API_URL/readyz"
}

start_controllers() {
  start kube-controller-manager "$KBIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --client-ca-file="$PKI/ca.crt" \
    --bind-address=127.0.0.1 --secure-port=10257 --leader-elect=false \
    --use-service-account-credentials=true \
    --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --cluster-name=ambient --controllers='*' --profiling=false
  start kube-scheduler "$KBIN/kube-scheduler" \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --profiling=false
  CURRENT=kube-controller-manager
  wait_for "kube-controller-manager /healthz" kube-controller-manager \
    in_net curl -sfk https://127.0.0.1:10257/healthz
  CURRENT=kube-scheduler
  wait_for "kube-scheduler /healthz" kube-scheduler in_net curl -sfk https://127.0.0.1:10259/healthz
}

# overlayfs when it mounts on the node's /var/lib/containerd (ext4 here), else native.
pick_snapshotter() {
  local t=/var/lib/containerd/.overlay-test
  if in_node sh -c "mkdir -p $t/l $t/u $t/w $t/m && mount -t overlay overlay -o lowerdir=$t/l,upperdir=$t/u,workdir=$t/w $t/m && umount $t/m"; then
    SNAPSHOTTER=overlayfs
  else
    SNAPSHOTTER=native
    warn "overlayfs does not mount on the node's /var/lib/containerd: using the native snapshotter"
  fi
  rm -rf "$STATE/node/var-lib-containerd/.overlay-test"
}

start_containerd() {
  pick_snapshotter
  sed -e "s|@STATE@|$STATE|g" -e "s|@SNAPSHOTTER@|$SNAPSHOTTER|g" "$here/containerd.toml.in" \
    >"$STATE/containerd.toml"
  start containerd /usr/bin/containerd --config "$STATE/containerd.toml"
  wait_for "containerd" containerd in_node ctr -a /run/containerd/containerd.sock version
}

setup_cni() {
  cp -a /usr/lib/cni/. "$STATE/node/opt-cni-bin/"
  install -m 0644 "$here/10-bridge.conflist" "$STATE/node/etc-cni-net.d/10-bridge.conflist"
}

# `import_images [--build]`: pause + app always; ambient-cni-node when build/bin has it.
import_images() {
  local build=0 out="$repo/build/images" bin="$repo/build/bin" tmp f
  [[ ${1:-} == --build ]] && build=1
  CURRENT=images
  local have_bin=0
  [[ -x $bin/ambient-cni-node && -x $bin/ambient-cni ]] && have_bin=1
  if ((have_bin)); then
    # Rebuilt when asked, when missing, or when the binaries are newer than the image.
    f=$(ls "$out"/ambient-cni-node_*.tar 2>/dev/null | head -n1 || true)
    if ((build)) || [[ ! -f $out/IMAGES || -z $f || $bin/ambient-cni-node -nt $f || $bin/ambient-cni -nt $f ]]; then
      say "building images (scripts/images.sh build)"
      "$repo/scripts/images.sh" build >&2 || die "scripts/images.sh build failed"
    fi
  else
    # No binaries: images.sh builds all three images, so give it stand-ins (copies of /bin/true)
    # and import only pause and app from a filtered list.
    out="$STATE/images"
    tmp="$STATE/images-bin"
    mkdir -p "$out" "$tmp"
    cp /bin/true "$tmp/ambient-cni-node"
    cp /bin/true "$tmp/ambient-cni"
    warn "no $bin/ambient-cni-node: importing pause and app only (build, then: cluster.sh images)"
    "$repo/scripts/images.sh" build --out "$out" --bin-dir "$tmp" >&2 || die "scripts/images.sh build failed"
    awk -F'\t' '$1 ~ /^#/ || $2 !~ /ambient-cni-node/' "$out/IMAGES" >"$out/IMAGES.tmp"
    mv "$out/IMAGES.tmp" "$out/IMAGES"
    rm -rf "$tmp" "$out"/ambient-cni-node_*.tar
  fi
  in_node "$repo/scripts/images.sh" import --out "$out" --address /run/containerd/containerd.sock \
    --snapshotter "$SNAPSHOTTER" >&2 || die "scripts/images.sh import failed"
}

start_kubelet() {
  sed -e "s|@STATE@|$STATE|g" -e "s|@NODE_IP@|$NODE_IP|g" -e "s|@CGROUP_ROOT@|$CGROUP_ROOT|g" \
    "$here/kubelet-config.yaml.in" >"$STATE/kubelet-config.yaml"
  start kubelet "$KBIN/kubelet" --config="$STATE/kubelet-config.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" --v=1
  wait_for "node $NODE_NAME Ready" kubelet node_ready
}

node_ready() {
  [[ $(kctl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

# --- up -----------------------------------------------------------------------------------------
up_failed() {
  local rc=$? log
  trap - EXIT
  set +e
  phase_end >/dev/null 2>&1
  echo "cluster: up FAILED (phase: ${PHASE:-?}, component: ${CURRENT:-?})" >&2
  log="$STATE/logs/$CURRENT.log"
  if [[ -n $CURRENT && -s $log ]]; then
    echo "---- errors in $log (last 15) ----" >&2
    grep -aE '^[EF][0-9]{4} |level=(error|fatal)|"level":"(error|fatal|panic)"|panic:' "$log" | tail -n 15 >&2
    echo "---- last 15 lines of $log ----" >&2
    tail -n 15 "$log" >&2
    echo "----" >&2
  fi
  if [[ -d $STATE/logs ]]; then
    local keep
    keep=$(mktemp -d "${TMPDIR:-/tmp}/ambient-cluster-failed.XXXXXX")
    cp -a "$STATE/logs/." "$keep/" 2>/dev/null
    echo "cluster: all logs kept in $keep" >&2
  fi
  cmd_down
  exit $((rc == 0 ? 1 : rc))
}

cmd_up() {
  need_root
  if netns_exists || mntns_exists || [[ -e $STATE/run ]]; then
    die "already up (or leftovers of an earlier run) at $STATE / netns $NETNS: run 'scripts/cluster.sh down' first"
  fi
  [[ -e $NETNS_PATH ]] && die "netns $NETNS exists: run 'scripts/cluster.sh down' first"
  UP_T0=$(now_us)
  trap up_failed EXIT
  phase "packages"
  ensure_packages
  phase "binaries (peers.sh)"
  ensure_binaries
  phase "namespaces"
  CURRENT=namespaces
  mkdir -p "$STATE/logs" "$STATE/run"
  chmod 0755 "$STATE"
  setup_netns
  setup_mntns
  setup_cgroups
  setup_cni
  {
    echo "# written by scripts/cluster.sh up"
    echo "KBIN=$KBIN"
    echo "EBIN=$EBIN"
    echo "KUBECTL=$KUBECTL"
    echo "NETNS=$NETNS"
    echo "NODE_NAME=$NODE_NAME"
    echo "NODE_IP=$NODE_IP"
    echo "API_URL=$API_URL"
    echo "KUBECONFIG=$STATE/admin.kubeconfig"
    echo "MNTNS=$MNTNS"
    echo "NETNS_PATH=$NETNS_PATH"
  } >"$STATE/env"
  phase "pki + kubeconfigs"
  CURRENT=pki
  make_pki
  kubeconfig "$STATE/admin.kubeconfig" admin
  kubeconfig "$STATE/kubelet.kubeconfig" kubelet
  kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager
  kubeconfig "$STATE/scheduler.kubeconfig" scheduler
  phase "etcd"
  start_etcd
  phase "kube-apiserver (/readyz)"
  start_apiserver
  phase "controller-manager+scheduler"
  start_controllers
  phase "containerd + images"
  start_containerd
  import_images
  phase "kubelet (node Ready)"
  start_kubelet
  phase "default ServiceAccount"
  CURRENT=kube-controller-manager
  wait_for "ServiceAccount default/default" kube-controller-manager kctl -n default get serviceaccount default
  wait_for "ConfigMap default/kube-root-ca.crt" kube-controller-manager kctl -n default get configmap kube-root-ca.crt
  phase_end
  trap - EXIT
  local t
  echo "cluster up in $(awk -v u="$(( $(now_us) - UP_T0 ))" 'BEGIN{printf "%.1f", u/1e6}') s:" >&2
  for t in "${TIMINGS[@]}"; do echo "  $t" >&2; done
  echo "  kubectl: scripts/cluster.sh kubectl get nodes   (kubeconfig $STATE/admin.kubeconfig, inside netns $NETNS)" >&2
}

# --- down ---------------------------------------------------------------------------------------
ns_inode() { stat -L -c %i "$1" 2>/dev/null || true; }

# Every process of the node: in its netns or mount namespace (components, shims, hostNetwork
# pods, `cluster.sh node` shells) or in its cgroups (pods in their own namespaces).
node_pids() {
  local net_ino mnt_ino
  net_ino=$(netns_exists && ns_inode "$NETNS_PATH" || true)
  mnt_ino=$(mntns_exists && ns_inode "$MNTNS" || true)
  {
    cgroup_pids
    # One find over /proc/<pid>/ns (the links read "net:[<inode>]").
    if [[ -n $net_ino || -n $mnt_ino ]]; then
      find /proc/[0-9]*/ns/ -maxdepth 1 \( -name net -lname "net:?${net_ino:-none}?" -o \
        -name mnt -lname "mnt:?${mnt_ino:-none}?" \) -printf '%h\n' 2>/dev/null | cut -d/ -f3
    fi
  } | grep -vx -e "$$" -e "$BASHPID" | sort -un
}

# The pid of component NAME if its pid file names a live process of the node.
component_pid() {
  local pid
  pid=$(cat "$STATE/run/$1.pid" 2>/dev/null) || return 1
  [[ -n $pid && -d /proc/$pid ]] || return 1
  # (not `node_pids | grep -q`: with pipefail, grep -q's early exit fails the pipe)
  grep -qx "$pid" <<<"$(node_pids)" || return 1
  echo "$pid"
}

alive() { [[ -d /proc/$1 && $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

# `signal_wait SIG SECONDS PID...`: signals, waits for them to go; SIGKILLs (and names) whatever
# outlives a SIGTERM.
signal_wait() {
  local sig=$1 secs=$2 p t left
  shift 2
  (($#)) || return 0
  SIGNALLED+=" $*"
  kill -"$sig" "$@" 2>/dev/null || true
  for ((t = 0; t < secs * 10; t++)); do
    left=""
    for p; do alive "$p" && left+=" $p"; done
    [[ -z $left ]] && return 0
    sleep 0.1
  done
  if [[ $sig == TERM ]]; then
    for p in $left; do warn "pid $p ($(cat "/proc/$p/comm" 2>/dev/null)) ignored SIGTERM for ${secs}s: SIGKILL"; done
    # shellcheck disable=SC2086
    signal_wait KILL 5 $left
    return 0
  fi
  return 1
}

cmd_down() {
  need_root
  set +e
  local pid pids i c left=""
  SIGNALLED=""
  # kubelet first (no restarts of what is killed next), then the pods, then the rest.
  pid=$(component_pid kubelet) && signal_wait TERM 5 "$pid"
  kill_pods
  # The API's clients and the apiserver together, etcd last (an apiserver that loses etcd
  # mid-shutdown hangs on it).
  pids=""
  for c in "${COMPONENTS[@]}"; do
    [[ $c == kubelet || $c == etcd ]] && continue
    pid=$(component_pid "$c") && pids+=" $pid"
  done
  # shellcheck disable=SC2086
  signal_wait TERM 10 $pids
  pid=$(component_pid etcd) && signal_wait TERM 10 "$pid"
  for i in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(node_pids)
    [[ -z $pids ]] && break
    # shellcheck disable=SC2086
    signal_wait KILL 3 $pids
  done
  pids=$(node_pids)
  [[ -n $pids ]] && warn "processes left in the node: $(echo $pids)"
  # Dead but not yet reaped (they were re-parented to PID 1): wait, so that nothing is listed after.
  for ((i = 0; i < 100; i++)); do
    left=""
    for pid in $SIGNALLED; do [[ -d /proc/$pid ]] && left+=" $pid"; done
    [[ -z $left ]] && break
    sleep 0.1
  done
  [[ -n $left ]] && warn "not yet reaped by their parent:$left"
  remove_cgroups
  # The mount namespace goes with its last reference (its mounts, pod netns bind mounts included).
  mntns_exists && umount "$MNTNS"
  mountpoint -q "$STATE/ns" 2>/dev/null && umount "$STATE/ns"
  if [[ -e $NETNS_PATH ]]; then
    ip netns del "$NETNS" || warn "ip netns del $NETNS failed"
  fi
  if [[ -d $STATE ]]; then
    if awk -v s="$STATE" '$2 == s || index($2, s "/") == 1 {found=1} END {exit !found}' /proc/self/mounts; then
      warn "mounts left under $STATE; not removing it:"
      awk -v s="$STATE" '$2 == s || index($2, s "/") == 1' /proc/self/mounts >&2
      return 1
    fi
    rm -rf --one-file-system "$STATE"
    # The default's parent too, when nothing else is in it.
    [[ $STATE == /var/lib/ambient-cni/cluster ]] && rmdir /var/lib/ambient-cni 2>/dev/null
  fi
  say "down"
  return 0
}

# Every pod process (the node's pod cgroups), SIGKILLed until none is left.
kill_pods() {
  local i pids
  for i in 1 2 3 4 5; do
    pids=$(cgroup_pids | sort -un)
    [[ -z $pids ]] && break
    # shellcheck disable=SC2086
    signal_wait KILL 5 $pids
  done
}

# --- reboot -------------------------------------------------------------------------------------
# What a node reboot does to what the node keeps: processes gone, tmpfs /run empty (pod netns,
# containerd's state, the ZDS socket, ambient-cni's run dir), the kernel's nftables empty;
# /var/lib (kubelet, containerd's content, host-local IPAM) and /etc/cni stay.
cmd_reboot() {
  need_root
  netns_exists && mntns_exists || die "cluster is down"
  load_env
  set +e
  local pid pids d t0
  SIGNALLED=""
  t0=$(now_us)
  pid=$(component_pid kubelet) && signal_wait KILL 5 "$pid"
  kill_pods
  pid=$(component_pid containerd) && signal_wait KILL 5 "$pid"
  pids=$(for p in $(node_pids); do [[ $(cat "/proc/$p/comm" 2>/dev/null) == containerd-shim* ]] && echo "$p"; done)
  # shellcheck disable=SC2086
  [[ -n $pids ]] && signal_wait KILL 5 $pids
  # /run is a tmpfs: everything under the node's run dirs goes (pod netns are bind mounts).
  in_node sh -c 'for f in /run/netns/*; do umount "$f" 2>/dev/null; rm -f "$f"; done'
  for d in run-containerd run-ztunnel run-ambient-cni; do
    in_node find "$STATE/node/$d" -mindepth 1 -delete 2>/dev/null
  done
  in_net nft flush ruleset
  set -e
  say "node down ($(( ($(now_us) - t0) / 1000 )) ms): starting containerd and kubelet again"
  start_containerd
  start_kubelet
  say "rebooted"
}

# --- kubelet alone -------------------------------------------------------------------------------
# The benchmark execs CNI plugins itself against pods that no kubelet must run (or reject past its
# 110-pod limit); pods already running stay up under their shims.
cmd_kubelet() {
  need_root
  netns_exists && mntns_exists || die "cluster is down"
  load_env
  local pid
  SIGNALLED=""
  case "${1:-}" in
    stop)
      if pid=$(component_pid kubelet); then
        signal_wait TERM 10 "$pid"
        say "kubelet stopped"
      else
        say "kubelet was not running"
      fi ;;
    start)
      component_pid kubelet >/dev/null && { say "kubelet is running"; return 0; }
      start_kubelet
      say "kubelet started" ;;
    *) die "usage: scripts/cluster.sh kubelet stop|start" ;;
  esac
}

# --- the node's PID 1 -----------------------------------------------------------------------------
cmd_pid1() {
  need_root
  netns_exists && mntns_exists || die "cluster is down"
  local pid
  if pid=$(component_pid node-init); then
    say "node PID 1 is pid $pid already"
    return 0
  fi
  mkdir -p "$STATE/run" "$STATE/logs"
  start node-init sleep infinity
  pid=$(cat "$STATE/run/node-init.pid")
  # setsid + nsenter exec: the pid recorded is the sleep itself once it has exec'd.
  wait_for "node-init in the node's netns" node-init component_pid node-init
  in_node mount --bind "/proc/$pid" /proc/1
  [[ $(in_node stat -L -c %i /proc/1/ns/net) == $(ns_inode "$NETNS_PATH") ]] ||
    die "/proc/1/ns/net in the node is not the node's netns"
  say "node PID 1: pid $pid (/proc/1 in the node's mount namespace)"
}

# --- status -------------------------------------------------------------------------------------
cmd_status() {
  local c pid up=0
  if netns_exists; then echo "netns      $NETNS ($NETNS_PATH)"; up=1; else echo "netns      $NETNS: absent"; fi
  if mntns_exists; then echo "mount ns   $MNTNS"; up=1; else echo "mount ns   absent"; fi
  if ((!up)) && [[ -e $STATE/run ]]; then echo "state      $STATE/run left by an earlier run (up refuses it: run down)"; up=1; fi
  ((up)) || { echo "cluster is down"; return 0; }
  for c in "${COMPONENTS[@]}"; do
    if pid=$(component_pid "$c"); then
      printf '%-24s running  pid %-7s since %s\n' "$c" "$pid" "$(ps -o lstart= -p "$pid")"
    else
      printf '%-24s NOT RUNNING (log: %s)\n' "$c" "$STATE/logs/$c.log"
    fi
  done
  echo "processes in the node: $(node_pids | wc -l)"
  load_env
  if component_pid kube-apiserver >/dev/null; then
    kctl get nodes -o wide || true
    kctl get pods -A -o wide || true
  fi
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down ;;
  status) shift; need_root; cmd_status ;;
  kubectl)
    shift; need_root
    netns_exists || die "cluster is down"
    load_env
    exec nsenter --net="$NETNS_PATH" -- "$KUBECTL" --kubeconfig "$STATE/admin.kubeconfig" "$@" ;;
  node)
    shift; need_root
    (($#)) || set -- bash
    netns_exists && mntns_exists || die "cluster is down"
    exec nsenter --mount="$MNTNS" --net="$NETNS_PATH" --wd="$PWD" -- "$@" ;;
  images)
    shift; need_root
    netns_exists && mntns_exists || die "cluster is down"
    SNAPSHOTTER=$(sed -nE 's/^ *snapshotter = "(.*)"/\1/p' "$STATE/containerd.toml")
    import_images "$@" ;;
  reboot) shift; cmd_reboot ;;
  kubelet) shift; cmd_kubelet "$@" ;;
  pid1) shift; cmd_pid1 ;;
  __node-mounts) node_mounts ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
