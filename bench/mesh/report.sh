#!/usr/bin/env bash
# The side-by-side table from bench/mesh/run.sh's results:
#   bench/mesh/report.sh DIR SYSTEM...   (DIR/<system>-exec.json, DIR/<system>-kubelet.json)
# The first system is ours; each other system gets a ratio column (ours ÷ it).
set -euo pipefail
dir=$1
shift
systems=("$@")
((${#systems[@]})) || { echo "usage: report.sh DIR SYSTEM..." >&2; exit 2; }

val() {  # system file jq-path → the number, or "" when absent
  local f="$dir/$1-$2.json"
  [[ -f $f ]] || { echo ""; return; }
  jq -r "($3) // empty | if type == \"number\" then . else empty end" "$f" 2>/dev/null || true
}
fmt() { [[ -z $1 ]] && echo "—" || printf "%.${2:-2}f" "$1"; }
ratio() { [[ -z $1 || -z $2 ]] && echo "—" || awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f ×", a / b; else print "—" }'; }

# measure label | file | jq path | unit | decimals | goal
rows=(
  "ADD, excluded namespace (median)|exec|.excluded_add.add.median_ms|ms|2|≤ 0.5 ×"
  "ADD, untouched pod: API lookup (median)|exec|.untouched_add.median_ms|ms|2|≤ 0.5 ×"
  "ADD, enrolled pod: until ztunnel's ack and \`enabled\` (median)|exec|.enrolled_add.whole.median_ms|ms|2|≤ 0.2 ×"
  "ADD, enrolled pod: the exec alone (median)|exec|.enrolled_add.exec.median_ms|ms|2|"
  "110 concurrent enrolled ADDs: p50|exec|.burst.median_ms|ms|1|"
  "110 concurrent enrolled ADDs: p99|exec|.burst.p99_ms|ms|1|≤ 0.2 ×"
  "110 concurrent enrolled ADDs: all annotated after|exec|.burst.all_enabled_ms|ms|0|"
  "\`kubectl label ns\` → 100 running pods served by ztunnel|kubelet|.label.ms|ms|0|≤ 0.2 ×"
  "agent RSS, 250 enrolled pods|exec|.rss.rss_with_pods_mib|MiB|1|≤ 0.3 ×"
  "agent RSS, idle|exec|.rss.rss_before_mib|MiB|1|"
  "agent CPU, 1,000 pod create → ADD → DEL → delete|exec|.churn.agent_cpu_s|s|2|≤ 0.3 ×"
  "kubelet: enrolled pod's sandbox (RunPodSandbox, median)|kubelet|.kubelet_enrolled.median_ms|ms|1|"
  "kubelet: plain pod's sandbox (RunPodSandbox, median)|kubelet|.kubelet_plain.median_ms|ms|1|"
)

ours=${systems[0]}
printf '| measure |'
for s in "${systems[@]}"; do printf ' %s |' "$s"; done
for s in "${systems[@]:1}"; do printf ' %s ÷ %s |' "$ours" "$s"; done
printf ' goal |\n|---|'
for _ in "${systems[@]}" "${systems[@]:1}"; do printf -- '---:|'; done
printf -- '---|\n'
for row in "${rows[@]}"; do
  IFS='|' read -r label file path unit dec goal <<<"$row"
  printf '| %s |' "$label"
  for s in "${systems[@]}"; do printf ' %s %s |' "$(fmt "$(val "$s" "$file" "$path")" "$dec")" "$unit"; done
  a=$(val "$ours" "$file" "$path")
  for s in "${systems[@]:1}"; do printf ' %s |' "$(ratio "$a" "$(val "$s" "$file" "$path")")"; done
  printf ' %s |\n' "$goal"
done
echo
# Ours against the static exec floor (the excluded ADD's other goal).
a=$(val "$ours" exec .excluded_add.add.median_ms)
f=$(val "$ours" exec .excluded_add.exec_floor.median_ms)
echo "- $ours excluded ADD ÷ static exec floor ($(fmt "$f") ms, same loop): $(ratio "$a" "$f") (goal ≤ 1.3 ×)"
for s in "${systems[@]}"; do
  ok=$(val "$s" exec .burst.succeeded)
  n=$(val "$s" exec .burst.attempted)
  fails=$(val "$s" exec .enrolled_add.failures)
  churn=$(val "$s" exec .churn.add_failures)
  served=$(val "$s" kubelet .label.served)
  echo "- $s: burst $(fmt "$ok" 0)/$(fmt "$n" 0) ADDs succeeded; enrolled-ADD samples failed: $(fmt "$fails" 0); churn ADD failures: $(fmt "$churn" 0); label: $(fmt "$served" 0) pods served"
  for f in exec kubelet; do
    e=$(jq -r '.error // empty' "$dir/$s-$f.json" 2>/dev/null || true)
    [[ -n $e ]] && echo "- $s $f phase stopped: $e"
  done
done
true
