#!/usr/bin/env bash
# The ambient-cni demo: builds everything, then runs a local testbed on this machine — a
# Kubernetes API stand-in, the real node agent, a ztunnel stand-in (speaking ZDS, proxying in
# each pod), and pods in their own network namespaces that the real plugin binary is run for,
# exactly as a container runtime runs it. Then it types the user's own kubectl commands and
# shows, after each step, which pods are in the mesh, why, and what ztunnel saw. Cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then echo "run as root: the testbed creates network namespaces" >&2; exit 2; fi
scripts/deps.sh
echo "==> building (release)"
scripts/build.sh release ambient-cni ambient-cni-node kube-apiserver-standin ztunnel-standin >/dev/null
BIN=$PWD/build/bin

RUN=$(mktemp -d /tmp/ambient-demo.XXXXXX)
NODE=ambdemo-node
PODS=(demo/web demo/client demo/reports legacy/batch legacy/api kube-system/coredns)
PIDS=()
cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  for p in "${PODS[@]}"; do ip netns del "ambdemo-${p#*/}" 2>/dev/null; done
  ip netns del "$NODE" 2>/dev/null
  rm -rf "$RUN"
}
trap cleanup EXIT
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
run() { printf '\n$ %s\n' "$*"; "$@"; }

uid_of() { jq -r --arg ns "${1%/*}" --arg n "${1#*/}" \
  '.items[] | select(.kind=="Pod" and .metadata.namespace==$ns and .metadata.name==$n) | .metadata.uid' examples/testbed-objects.json; }
ip_of() { jq -r --arg ns "${1%/*}" --arg n "${1#*/}" \
  '.items[] | select(.kind=="Pod" and .metadata.namespace==$ns and .metadata.name==$n) | .status.podIP' examples/testbed-objects.json; }

say "Starting the testbed in $RUN"
# The node: a netns with a bridge every pod is attached to (what the bridge CNI would do).
ip netns add "$NODE"
ip -n "$NODE" link set lo up
ip -n "$NODE" link add ambdemo0 type bridge
ip -n "$NODE" addr add 10.244.0.1/24 dev ambdemo0
ip -n "$NODE" link set ambdemo0 up

"$BIN/kube-apiserver-standin" --objects examples/testbed-objects.json --kubeconfig-out "$RUN/kubeconfig" \
  --ready-file "$RUN/api.port" 2>"$RUN/apiserver.log" & PIDS+=($!)
for _ in $(seq 100); do [[ -s $RUN/api.port ]] && break; sleep 0.05; done
export KUBECONFIG=$RUN/kubeconfig
jq '.plugins[-1] + {cniVersion: .cniVersion, cni_agent_run_dir: $run, kubeconfig: ($run + "/kubeconfig")}' \
  --arg run "$RUN" examples/ambient.conflist > "$RUN/plugin.json"
"$BIN/ztunnel-standin" --socket "$RUN/ztunnel.sock" --log "$RUN/ztunnel.log" 2>"$RUN/ztunnel-standin.log" & PIDS+=($!)
"$BIN/ambient-cni-node" agent --run-dir "$RUN" --ztunnel-socket "$RUN/ztunnel.sock" \
  --kubeconfig "$RUN/kubeconfig" --node-name demo-node --host-netns "/var/run/netns/$NODE" \
  --plugin-config "$RUN/plugin.json" --listen-address 127.0.0.1 --health-port 18000 \
  --metrics-port 18014 2>"$RUN/agent.log" & PIDS+=($!)
for _ in $(seq 200); do curl -sf http://127.0.0.1:18000/readyz >/dev/null && break; sleep 0.05; done
echo "API stand-in on :$(cat "$RUN/api.port"), node agent ready ($(curl -s http://127.0.0.1:18000/readyz)), ztunnel stand-in connected"

# Each pod: a netns on the bridge, an app on :8080, then the plugin's ADD as containerd runs it.
n=0
for p in "${PODS[@]}"; do
  ns=${p%/*} name=${p#*/} net=ambdemo-${p#*/} ip=$(ip_of "$p") n=$((n + 1))
  ip netns add "$net"
  ip -n "$net" link set lo up
  ip -n "$NODE" link add "vd$n" type veth peer name eth0 netns "$net"
  ip -n "$NODE" link set "vd$n" master ambdemo0 up
  ip -n "$net" addr add "$ip/24" dev eth0
  ip -n "$net" link set eth0 up
  ip -n "$net" route add default via 10.244.0.1
  ip netns exec "$net" socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:"echo hello from $name" 2>/dev/null & PIDS+=($!)
  prev=$(jq -nc --arg ip "$ip/24" --arg net "/var/run/netns/$net" \
    '{cniVersion:"1.0.0",interfaces:[{name:"eth0",sandbox:$net}],ips:[{address:$ip,gateway:"10.244.0.1",interface:0}],dns:{}}')
  conf=$(jq -c --argjson prev "$prev" '. + {prevResult: $prev}' "$RUN/plugin.json")
  if out=$(env -i CNI_COMMAND=ADD CNI_CONTAINERID="sandbox-$name" CNI_NETNS="/var/run/netns/$net" \
      CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \
      CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=$ns;K8S_POD_NAME=$name;K8S_POD_UID=$(uid_of "$p")" \
      "$BIN/ambient-cni" <<<"$conf" 2>>"$RUN/plugin.log"); then
    echo "  ADD $p: ok"
  else
    echo "  ADD $p: FAILED: $out"
  fi
done

# Every pod opens one connection to demo/web; ztunnel's log tells who was captured.
traffic() {
  for p in "${PODS[@]}"; do
    ip netns exec "ambdemo-${p#*/}" socat -T2 - TCP:10.244.0.11:8080,connect-timeout=2 </dev/null >/dev/null 2>&1 || true
  done
  sleep 0.3
}
table() {
  printf '\n  %-10s %-12s %-9s %-72s %s\n' POD NAMESPACE ENROLLED REASON "ZTUNNEL SAW (out/in)"
  for p in "${PODS[@]}"; do
    ns=${p%/*} name=${p#*/} ip=$(ip_of "$p")
    kubectl get pod -n "$ns" "$name" -o json > "$RUN/pod.json"
    kubectl get ns "$ns" -o json > "$RUN/ns.json"
    reason=$("$BIN/ambient-cni-node" explain --pod "$RUN/pod.json" --namespace "$RUN/ns.json" \
      --config "$RUN/plugin.json" -o json | jq -r .reason)
    status=$(jq -r '.metadata.annotations["ambient.istio.io/redirection"] // "-"' "$RUN/pod.json")
    enrolled=no; [[ $status == enabled && -f $RUN/enrolled/$(uid_of "$p").json ]] && enrolled=yes
    out=$(jq -r --arg ip "$ip" 'select(.direction=="outbound" and (.src|startswith($ip+":")))' \
      "$RUN/ztunnel.log.step" 2>/dev/null | grep -c '^{' || true)
    in=$(jq -r --arg ip "$ip" 'select(.direction=="inbound" and (.original_dst|startswith($ip+":")))' \
      "$RUN/ztunnel.log.step" 2>/dev/null | grep -c '^{' || true)
    printf '  %-10s %-12s %-9s %-72s %s\n' "$name" "$ns" "$enrolled" "$reason" "$out/$in"
  done
}
step() {  # runs the user's command, waits for the agent to settle, shows the table
  : > "$RUN/ztunnel.log"
  run "$@"
  sleep 0.5
  traffic
  cp "$RUN/ztunnel.log" "$RUN/ztunnel.log.step"
  table
}

cat <<MSG

Every step below runs the user's command, then has each pod open one connection to demo/web
(10.244.0.11:8080). ZTUNNEL SAW counts what the ztunnel stand-in proxied for that pod: "out" =
its outbound connections captured on 15001, "in" = connections to it captured on 15006.
MSG
say "1. Namespace demo is labelled ambient: its pods were enrolled at ADD; reports opted out."
: > "$RUN/ztunnel.log"; traffic; cp "$RUN/ztunnel.log" "$RUN/ztunnel.log.step"; table
say "2. Enrol the running pods of namespace legacy, without restarting them."
step kubectl label ns legacy istio.io/dataplane-mode=ambient
say "3. Take demo/client out of the mesh."
step kubectl label pod -n demo client istio.io/dataplane-mode=none
say "4. Remove the label from legacy: its pods leave the mesh (legacy/api keeps its own pod label)."
step kubectl label ns legacy istio.io/dataplane-mode-
say "5. Remove the namespace label from demo."
step kubectl label ns demo istio.io/dataplane-mode-

say "Agent metrics (excerpt)"
curl -s http://127.0.0.1:18014/metrics | grep -E '^ambient_cni_(enrolled_pods|ztunnel_connections|requests_total)' | head -8
cat <<MSG

Done; the testbed is being removed. What to try next:
  - ambient-cni-node explain --pod POD.json --namespace NS.json -o json   (any kubectl -o json output)
  - ambient-cni-node redirect apply --netns /var/run/netns/X --dry-run    (the exact nft rules a pod gets)
  - scripts/test.sh                                                        (every test layer, ASan, fuzzing)
  - bench/README.md                                                        (benchmarks against their anchors)
MSG
