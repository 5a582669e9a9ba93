#!/usr/bin/env bash
# Ours and Istio's istio-cni side by side on one real node (issue 14), in one run:
#
#   bench/mesh/run.sh [--systems "ours istio-nftables istio-iptables"] [--quick] [--out DIR]
#                     [--keep]   (the cluster stays up, the last system installed)
#
# For each system in turn, on the same cluster (scripts/cluster.sh), the same API server and the
# same Istio ztunnel:
#   1. install it as its users do: ours with `kubectl apply -k install/manifests/overlays/testbed`;
#      Istio's with its own Helm chart (istio.io/istio manifests/charts/istio-cni, `profile=ambient`,
#      nftables or iptables mode) rendered by Helm and applied with kubectl, its images built from
#      the same module (scripts/peers.sh istio-cni, scripts/images.sh istio-cni);
#   2. check it works before any number is taken (a benchmark of a broken setup is worthless):
#      pods in an ambient namespace are annotated `enabled`, have in-pod rules, and demo → demo
#      goes HBONE through ztunnel with both identities in its access log; untouched pods are not;
#   3. measure through the real kubelet, then with the kubelet stopped and the plugin exec'd
#      directly (bench/mesh/mesh_bench.cpp says what each measure is);
#   4. uninstall it and check the node's CNI configuration is back as it was.
# Results: DIR/<system>-{exec,kubelet}.json and DIR/mesh.md (the table, ratios ours ÷ Istio's),
# which bench/run.sh folds into bench/results/latest.md. Root; takes the cluster lock
# (/tmp/ambient-node.lock) for the whole run.
set -Eeuo pipefail
export LC_ALL=C
# A command that ends the run says which it was (set -e alone ends it silently).
trap 'echo "mesh bench: line $LINENO: \"$BASH_COMMAND\" exited $?" >&2' ERR
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
[[ $EUID -eq 0 ]] || { echo "run as root" >&2; exit 2; }

SYSTEMS="ours istio-nftables istio-iptables"
OUT=bench/results/mesh
QUICK=0
KEEP=0
while (($#)); do
  case "$1" in
    --keep) KEEP=1; shift ;;  # leave the cluster up with the last system installed
    --systems) SYSTEMS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "usage: bench/mesh/run.sh [--systems LIST] [--quick] [--out DIR]" >&2; exit 2 ;;
  esac
done
if ((QUICK)); then
  EXEC_ARGS=(--runs 10 --burst 20 --rss-pods 20 --churn 40)
  KUBELET_ARGS=(--kubelet-pods 5 --label-pods 10)
else
  EXEC_ARGS=(--runs 40 --burst 110 --rss-pods 250 --churn 1000)
  KUBELET_ARGS=(--kubelet-pods 20 --label-pods 100)
fi

say() { echo "==> mesh bench: $*" >&2; }
die() { echo "mesh bench: $*" >&2; exit 1; }

STATE=/var/lib/ambient-cni/cluster
CLUSTER="$repo/scripts/cluster.sh"
BIN="$repo/build/bin"
# The cluster lock's fd (9) is not for the node's processes: started from here they would hold
# the lock for as long as they run (--keep: for good).
cl() { "$CLUSTER" "$@" 9>&-; }
kc() { cl kubectl "$@"; }

# --- peers, builds, images ----------------------------------------------------------------------
scripts/deps.sh
scripts/peers.sh ztunnel >/dev/null
scripts/peers.sh kubernetes >/dev/null
scripts/peers.sh etcd >/dev/null
ISTIO_SRC=$(scripts/peers.sh istio | tail -n1)
ISTIO_BIN=$(scripts/peers.sh istio-cni | tail -n1)
HELM="$(scripts/peers.sh helm | tail -n1)/helm"
scripts/build.sh release ambient-cni ambient-cni-node ztunnel-mesh mesh_bench exec_floor >/dev/null
scripts/images.sh build >/dev/null
scripts/images.sh istio-cni >/dev/null
ISTIO_IMAGE=$(awk -F'\t' '$1 !~ /^#/ {print $2; exit}' build/images-istio/IMAGES)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# (AMBIENT_NODE_LOCK_HELD=1: the caller holds it already)
if [[ ${AMBIENT_NODE_LOCK_HELD:-0} != 1 ]]; then
  exec 9>/tmp/ambient-node.lock
  say "waiting for the cluster lock"
  flock 9
fi

ZTUNNEL_PID=""
stop_ztunnel() {
  [[ -n $ZTUNNEL_PID ]] || return 0
  kill -TERM "$ZTUNNEL_PID" 2>/dev/null || true
  wait "$ZTUNNEL_PID" 2>/dev/null || true
  ZTUNNEL_PID=""
  # ztunnel-mesh stops its ztunnel; one still running would hold 15001/15006/15008/15021 and the
  # next ztunnel could not start
  local i
  for i in $(seq 50); do
    pgrep -f "^$BIN/ztunnel-mesh run" >/dev/null || return 0
    sleep 0.2
  done
  echo "mesh bench: ztunnel-mesh did not stop on TERM, killed: $(pgrep -af "^$BIN/ztunnel-mesh run" | tr '\n' ' ')" >&2
  pkill -KILL -f "^$BIN/ztunnel-mesh run" || true
  pkill -KILL -x ztunnel || true
}
cleanup() {
  set +e
  stop_ztunnel
  ((KEEP)) || cl down >/dev/null 2>&1
}
trap cleanup EXIT

# Istio's real ztunnel in the node, on the ZDS socket both systems serve (/var/run/ztunnel).
# Dynamic (ztunnel-mesh restarts it when the pods' config changes) for the checks; frozen for the
# measures: ZDS adds are acked whether or not the workload is in its config, and a restart must
# not land in the middle of a measure.
start_ztunnel() {
  mkdir -p "$STATE/ztunnel"
  rm -f "$STATE/ztunnel/status"  # the previous run's "ready" must not satisfy settle
  # (not through cl: $! must be cluster.sh itself, which execs nsenter and ztunnel-mesh, so that
  # stop_ztunnel's signal reaches ztunnel-mesh; a function's subshell would take it alone and
  # leave ztunnel holding its ports for the next system)
  "$CLUSTER" node "$BIN/ztunnel-mesh" run --kubeconfig "$STATE/admin.kubeconfig" \
    --inpod-uds /var/run/ztunnel/ztunnel.sock --dir "$STATE/ztunnel" --node-name ambient-node \
    "$@" >>"$STATE/ztunnel/mesh.log" 2>&1 9>&- &
  ZTUNNEL_PID=$!
}
settle() {
  cl node "$BIN/ztunnel-mesh" wait --kubeconfig "$STATE/admin.kubeconfig" \
    --dir "$STATE/ztunnel" --timeout-ms 90000 >/dev/null
}

conf_snapshot() { (cd "$STATE/node/etc-cni-net.d" && sha256sum -- * 2>/dev/null | sort); }
conf_canonical() {
  local f
  for f in "$STATE"/node/etc-cni-net.d/*; do echo "$(basename "$f") $(jq -cS . "$f" 2>/dev/null || sha256sum <"$f")"; done
}

# --- install / uninstall ------------------------------------------------------------------------
istio_manifest() {  # mode → rendered chart on stdout
  local nft=false
  [[ $1 == istio-nftables ]] && nft=true
  # The chart as an ambient user installs it (profile=ambient), with what this node needs: the
  # locally imported image, and the API's address (no kube-proxy: the Service VIP does not
  # route). The agent shares the node's network namespace (ambient.shareHostNetworkNamespace):
  # its default switches to PID 1's netns for the host rules, which here is the machine's, not
  # the node's.
  "$HELM" template istio-cni "$ISTIO_SRC/manifests/charts/istio-cni" -n istio-system \
    --set profile=ambient --set "image=$ISTIO_IMAGE" --set global.imagePullPolicy=Never \
    --set global.nativeNftables=$nft --set ambient.shareHostNetworkNamespace=true \
    --set env.KUBERNETES_SERVICE_HOST=10.77.0.1 --set-string env.KUBERNETES_SERVICE_PORT=6443
}

install_system() {
  case "$1" in
    ours)
      kc apply -k install/manifests/overlays/testbed >/dev/null
      kc -n istio-system rollout status ds/ambient-cni-node --timeout=180s >/dev/null ;;
    istio-*)
      kc create namespace istio-system >/dev/null 2>&1 || true
      istio_manifest "$1" >"$OUT/$1-manifest.yaml"
      kc apply -f "$OUT/$1-manifest.yaml" >/dev/null
      kc -n istio-system rollout status ds/istio-cni-node --timeout=180s >/dev/null ;;
  esac
}

uninstall_system() {
  case "$1" in
    ours)
      kc -n istio-system delete ds ambient-cni-node --wait --timeout=120s >/dev/null
      kc delete -k install/manifests/overlays/testbed --ignore-not-found --wait --timeout=120s >/dev/null ;;
    istio-*)
      kc delete -f "$OUT/$1-manifest.yaml" --ignore-not-found --wait --timeout=120s >/dev/null ;;
  esac
  # The same JSON is required; byte-identical is recorded (ours restores the bytes it found).
  local i
  for i in $(seq 1 60); do
    [[ $(conf_canonical) == "$CONF_CANONICAL" ]] && break
    sleep 1
  done
  if [[ $(conf_canonical) != "$CONF_CANONICAL" ]]; then
    echo "$1: the node's CNI configuration is not as before the install:" >&2
    diff <(echo "$CONF_CANONICAL") <(conf_canonical) >&2 || true
    return 1
  fi
  if [[ $(conf_snapshot) == "$CONF_BEFORE" ]]; then
    echo "- $1 uninstalled: the node's CNI configuration is byte-identical to before" >>"$OUT/checks.md"
  else
    echo "- $1 uninstalled: the node's CNI configuration holds the same JSON as before, not the same bytes" >>"$OUT/checks.md"
  fi
}

# --- the check ----------------------------------------------------------------------------------
pod_netns_pid() {  # ns pod → the pid of its first container, from containerd
  local id
  id=$(kc -n "$1" get pod "$2" -o jsonpath='{.status.containerStatuses[0].containerID}')
  id=${id#*://}
  cl node ctr -n k8s.io task ls | awk -v id="$id" '$1 == id {print $2}'
}
in_pod_rules() {  # ns pod → "nft:<istio tables>" / "iptables:<ISTIO chains>" found in its netns
  local pid t c
  pid=$(pod_netns_pid "$1" "$2")
  [[ -n $pid ]] || { echo "no-container"; return; }
  t=$(nsenter -t "$pid" -n nft list tables 2>/dev/null | grep -cE 'istio|ambient' || true)
  c=$(nsenter -t "$pid" -n iptables-nft-save 2>/dev/null | grep -c '^:ISTIO' || true)
  c=$((c + $(nsenter -t "$pid" -n iptables-legacy-save 2>/dev/null | grep -c '^:ISTIO' || true)))
  echo "tables=$t chains=$c"
}
check_system() {
  local sys=$1 ip a r out from problems=""
  kc apply -f tests/cluster/workloads.yaml >/dev/null
  kc wait --for=condition=Ready pod --all -n demo --timeout=180s >/dev/null
  kc wait --for=condition=Ready pod --all -n legacy --timeout=180s >/dev/null
  settle
  {
    echo "### $sys: correctness before the numbers"
    echo
    echo '| pod | annotation | in-pod rules |'
    echo '|---|---|---|'
    for p in demo/web demo/client legacy/web legacy/client; do
      a=$(kc -n "${p%/*}" get pod "${p#*/}" -o jsonpath='{.metadata.annotations.ambient\.istio\.io/redirection}')
      r=$(in_pod_rules "${p%/*}" "${p#*/}")
      echo "| $p | ${a:-none} | $r |"
      case "$p:$a:$r" in
        demo/*:enabled:tables=0\ chains=0) problems+=" $p is enabled without in-pod rules;" ;;
        demo/*:enabled:*) ;;
        legacy/*::tables=0\ chains=0) ;;
        *) problems+=" $p: annotation '${a}', rules '$r';" ;;
      esac
    done
  } >>"$OUT/checks.md"
  ip=$(kc -n demo get pod web -o jsonpath='{.status.podIP}')
  from=$(stat -c %s "$STATE/ztunnel/ztunnel.log" 2>/dev/null || echo 0)
  # (ztunnel-mesh may still be restarting ztunnel for the pods just enrolled: a few tries)
  local try
  for try in 1 2 3 4 5; do
    out=$(kc -n demo exec client -- sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 $ip 8080" 2>/dev/null | tail -n1 || true)
    [[ $out == web-demo ]] && break
    sleep 2
    settle || true
  done
  [[ $out == web-demo ]] || problems+=" demo/client → demo/web answered '$out';"
  sleep 2
  local hbone
  # (ztunnel's log holds lines that are not JSON, a restart's for one: jq -R and fromjson?, or
  # jq exits 4 on them and the run ends here)
  hbone=$(tail -c +"$((from + 1))" "$STATE/ztunnel/ztunnel.log" |
    jq -Rrc 'fromjson? | select(.message == "connection complete" and .direction == "inbound"
                   and (."dst.hbone_addr" // "" | startswith("'"$ip"':8080")))
            | "\(."src.identity") → \(."dst.identity")"' 2>/dev/null | sed -n 1p || true)
  [[ $hbone == "spiffe://cluster.local/ns/demo/sa/default → spiffe://cluster.local/ns/demo/sa/default" ]] ||
    problems+=" no HBONE demo → demo in ztunnel's access log ('$hbone');"
  {
    echo
    echo "demo/client → demo/web: \`$out\`; ztunnel inbound: \`${hbone:-none}\`"
    echo
  } >>"$OUT/checks.md"
  kc delete -f tests/cluster/workloads.yaml --wait --timeout=120s >/dev/null
  [[ -z $problems ]] || die "$sys does not work on this node:$problems (see $OUT/checks.md)"
}

# --- the run ------------------------------------------------------------------------------------
say "cluster up"
cl down >/dev/null 2>&1 || true
cl up >/dev/null
cl pid1 >/dev/null
SNAP=$(sed -nE 's/^ *snapshotter = "(.*)"/\1/p' "$STATE/containerd.toml")
cl node "$repo/scripts/images.sh" import --out "$repo/build/images-istio" \
  --address /run/containerd/containerd.sock --snapshotter "$SNAP" >/dev/null
CONF_BEFORE=$(conf_snapshot)
CONF_CANONICAL=$(conf_canonical)
: >"$OUT/checks.md"

for sys in $SYSTEMS; do
  case $sys in
    ours) plugin=/opt/cni/bin/ambient-cni comm=ambient-cni-nod ;;
    istio-nftables | istio-iptables) plugin=/opt/cni/bin/istio-cni comm=install-cni ;;
    *) die "unknown system $sys" ;;
  esac
  say "$sys: install"
  start_ztunnel
  install_system "$sys"
  say "$sys: check"
  check_system "$sys"
  stop_ztunnel
  start_ztunnel --frozen
  settle
  say "$sys: through the kubelet"
  cl node "$BIN/mesh_bench" kubelet --system "$sys" \
    --kubeconfig "$STATE/admin.kubeconfig" --json "$OUT/$sys-kubelet.json" \
    --containerd-log "$STATE/logs/containerd.log" "${KUBELET_ARGS[@]}"
  say "$sys: plugin exec'd directly (kubelet stopped)"
  cl kubelet stop
  cl node "$BIN/mesh_bench" exec --system "$sys" \
    --kubeconfig "$STATE/admin.kubeconfig" --json "$OUT/$sys-exec.json" \
    --plugin "$plugin" --conflist /etc/cni/net.d/10-bridge.conflist --agent-comm "$comm" \
    --exec-floor "$BIN/exec_floor" "${EXEC_ARGS[@]}"
  cl kubelet start
  stop_ztunnel
  [[ $KEEP == 1 && $sys == "${SYSTEMS##* }" ]] && break
  say "$sys: uninstall"
  uninstall_system "$sys"
done

say "report"
bench/mesh/report.sh "$OUT" $SYSTEMS >"$OUT/mesh.md"
cat "$OUT/mesh.md"
