#!/usr/bin/env bash
# Every benchmark, side by side with its anchors, in one invocation (root: network namespaces).
# Writes bench/results/latest.md and bench/results/*.json. Medians and ratios; nothing here
# passes or fails on a number. Run it on a quiet machine: other load shows up in every row.
#
#   bench/run.sh            everything: the side-by-side run with Istio's istio-cni on a real node
#                           first (bench/mesh/run.sh: builds Kubernetes, ztunnel, Istio's CNI and
#                           Helm when the peers cache lacks them; ~35 min on 2 CPUs), then the
#                           plugin exec, node path and rule programming benchmarks
#   bench/run.sh --no-mesh  the latter only (no cluster, a few minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then echo "run as root" >&2; exit 2; fi
MESH=1
[[ ${1:-} == --no-mesh ]] && MESH=0
scripts/deps.sh
if ((MESH)); then
  # Ours and Istio's istio-cni (nftables and iptables modes) on the same node, API server and
  # ztunnel; its table leads latest.md.
  bench/mesh/run.sh --out bench/results/mesh
fi
scripts/build.sh release ambient-cni ambient-cni-node exec_floor exec_floor_dynamic rss_probe \
  plugin_exec_bench redirect_bench redirect_apply_once redirect_raw_apply_once node_bench >/dev/null
BIN=build/bin
OUT=bench/results
mkdir -p "$OUT"
NS=ambbench-$$
ip netns add "$NS"
trap 'ip netns del "$NS" 2>/dev/null || true' EXIT

{
  echo "# ambient-cni benchmarks"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) CPUs, $(uname -r); command: \`bench/run.sh\`."
  echo
  if [[ -f bench/results/mesh/mesh.md ]]; then
    echo "## Side by side with Istio's istio-cni on one real node (bench/mesh/run.sh)"
    echo
    echo "Same kube-apiserver, kubelet, containerd and Istio ztunnel; each system installed as its"
    echo "users do and checked to work before it is measured (bench/results/mesh/checks.md)."
    echo "$( ((MESH)) || echo '(from an earlier run: --no-mesh)')"
    echo
    cat bench/results/mesh/mesh.md
    echo
  fi
  echo "## Plugin exec: excluded-namespace ADD against the exec floor and Go portmap"
  echo
  "$BIN/plugin_exec_bench" --plugin "$BIN/ambient-cni" --floor "$BIN/exec_floor" \
    --floor-dynamic "$BIN/exec_floor_dynamic" --netns "/var/run/netns/$NS" --runs 400 \
    --json "$OUT/plugin_exec.json"
  echo
  echo "## The node path: ADD per kind of pod, a full node, label → enrolled, memory"
  echo
  "$BIN/node_bench" --plugin "$BIN/ambient-cni" --node "$BIN/ambient-cni-node" \
    --rss-probe "$BIN/rss_probe" --runs 60 --burst 110 --label-pods 100 --rss-pods 250 \
    --json "$OUT/node.json"
  echo
  echo "## Rule programming: the plan's batch replayed (decision 017) vs raw replay, libnftables, iptables-restore"
  echo
  "$BIN/redirect_bench" --reps 40 --json "$OUT/redirect.json"
} | tee "$OUT/latest.md"
