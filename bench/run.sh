#!/usr/bin/env bash
# Every benchmark, side by side with its anchors, in one invocation (root: network namespaces).
# Writes bench/results/latest.md and bench/results/*.json. Medians and ratios; nothing here
# passes or fails on a number. Run it on a quiet machine: other load shows up in every row.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then echo "run as root" >&2; exit 2; fi
scripts/deps.sh
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
  echo "## Rule programming: libnftables in-process vs iptables-restore (decision 002)"
  echo
  "$BIN/redirect_bench" --reps 40 --json "$OUT/redirect.json"
} | tee "$OUT/latest.md"
