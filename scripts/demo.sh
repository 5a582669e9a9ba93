#!/usr/bin/env bash
# The ambient-cni demo: builds everything (and Istio's real ztunnel on first use, cached after),
# then runs a local testbed on this machine — a Kubernetes API stand-in, the real node agent,
# Istio's real ztunnel (unchanged, taking our pods over ZDS), and pods in their own network
# namespaces on a bridge that the real plugin binary is run for, exactly as a container runtime
# runs it. Then it types the user's own kubectl commands and shows, after each step, which pods
# are in the mesh, why, and what ztunnel itself reports for their traffic. Cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then echo "run as root: the testbed creates network namespaces" >&2; exit 2; fi
scripts/deps.sh
echo "==> ztunnel (Istio's node proxy, built from source on first use, then cached)"
ZTUNNEL=$(scripts/peers.sh ztunnel)
export AMBIENT_ZTUNNEL_BIN=$ZTUNNEL
echo "==> building (release)"
scripts/build.sh release ambient-cni ambient-cni-node kube-apiserver-standin ztunnel-mesh >/dev/null
BIN=$PWD/build/bin

RUN=$(mktemp -d /tmp/ambient-demo.XXXXXX)
NODE=ambdemo-node
PODS=(demo/web demo/client demo/reports legacy/batch legacy/api kube-system/coredns)
WEB_IP=10.244.0.11
PIDS=()
cleanup() {
  set +e
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; wait "${PIDS[i]}" 2>/dev/null; done
  for p in "${PODS[@]}"; do ip netns del "ambdemo-${p#*/}" 2>/dev/null; done
  ip netns del "$NODE" 2>/dev/null
  if [[ -n ${KEEP:-} ]]; then echo "kept $RUN"; else rm -rf "$RUN"; fi
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
"$BIN/ambient-cni-node" agent --run-dir "$RUN" --ztunnel-socket "$RUN/ztunnel.sock" \
  --kubeconfig "$RUN/kubeconfig" --node-name demo-node --host-netns "/var/run/netns/$NODE" \
  --plugin-config "$RUN/plugin.json" --listen-address 127.0.0.1 --health-port 18000 \
  --metrics-port 18014 2>"$RUN/agent.log" & PIDS+=($!)
for _ in $(seq 200); do curl -sf http://127.0.0.1:18000/readyz >/dev/null && break; sleep 0.05; done
# Istio's ztunnel in the node's netns, on our agent's ZDS socket; ztunnel-mesh plays istiod
# (local config from the API's pods + examples/ztunnel-demo.json's service and policy).
"$BIN/ztunnel-mesh" run --kubeconfig "$RUN/kubeconfig" --netns "/var/run/netns/$NODE" \
  --inpod-uds "$RUN/ztunnel.sock" --dir "$RUN/ztunnel" --node-name demo-node \
  --extras examples/ztunnel-demo.json 2>"$RUN/ztunnel-mesh.log" & PIDS+=($!)
"$BIN/ztunnel-mesh" wait --kubeconfig "$RUN/kubeconfig" --dir "$RUN/ztunnel"
ZLOG=$RUN/ztunnel/ztunnel.log
zt_admin() { ip netns exec "$NODE" curl -s "http://127.0.0.1:15000/$1"; }
echo "API stand-in on :$(cat "$RUN/api.port"), node agent $(curl -s http://127.0.0.1:18000/readyz)," \
  "ztunnel $(ip netns exec "$NODE" curl -s http://127.0.0.1:15021/healthz/ready)" \
  "($(jq -r '.message' <(grep -m1 '"local config initialized"' "$ZLOG") 2>/dev/null || echo started))"

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

# Waits until the agent's patches have landed and ztunnel runs the matching config.
settle() { sleep 0.3; "$BIN/ztunnel-mesh" wait --kubeconfig "$RUN/kubeconfig" --dir "$RUN/ztunnel"; }
# Every pod but web opens one connection to demo/web; what each got back is kept.
traffic() {
  ZSTART=$(wc -l <"$ZLOG")
  for p in "${PODS[@]}"; do
    [[ $p == demo/web ]] && continue
    reply=$(ip netns exec "ambdemo-${p#*/}" socat -T2 - TCP:$WEB_IP:8080,connect-timeout=2 </dev/null 2>/dev/null || true)
    echo "${reply:-no reply}" > "$RUN/reply.${p#*/}"
  done
  sleep 0.5  # both ends of a connection log "complete" when their side closes
}
# What ztunnel logged for a connection from ip to web: on web's side, HBONE (with the client's
# identity) or plaintext captured on 15006 and whether web's policy let it through; failing that,
# the client's own ztunnel sending it on (web outside the mesh).
saw() {
  tail -n +"$((ZSTART + 1))" "$ZLOG" | grep '^{' | jq -r --arg ip "$1" --arg web "$WEB_IP" '
    select(.scope == "access" and .message == "connection complete"
           and (."src.addr" | startswith($ip + ":")) and (."dst.addr" | startswith($web + ":")))
    | if .direction == "inbound" then
        "in: " + (if (."dst.addr" | endswith(":15008")) then "HBONE mTLS as " + (."src.identity" | sub("spiffe://cluster.local/"; ""))
                  else "plaintext on 15006" end)
        + (if .error then ", denied by " + (.error | sub(".*denied by: "; "") | sub(".*: "; "")) else ", allowed" end)
      else "out: its ztunnel sent it plaintext (web not meshed)" end' | sort | head -1
}
table() {
  local dump; dump=$(zt_admin config_dump)
  printf '\n  %-8s %-12s %-9s %-8s %-15s %-52s %s\n' POD NAMESPACE ENROLLED ZTUNNEL "REPLY FROM web" "WHAT ZTUNNEL SAW" REASON
  for p in "${PODS[@]}"; do
    ns=${p%/*} name=${p#*/} ip=$(ip_of "$p") uid=$(uid_of "$p")
    kubectl get pod -n "$ns" "$name" -o json > "$RUN/pod.json"
    kubectl get ns "$ns" -o json > "$RUN/ns.json"
    reason=$("$BIN/ambient-cni-node" explain --pod "$RUN/pod.json" --namespace "$RUN/ns.json" \
      --config "$RUN/plugin.json" -o json | jq -r .reason)
    status=$(jq -r '.metadata.annotations["ambient.istio.io/redirection"] // "-"' "$RUN/pod.json")
    enrolled=no; [[ $status == enabled && -f $RUN/enrolled/$uid.json ]] && enrolled=yes
    holds=$(jq -r --arg uid "$uid" '.workloadState[$uid].state // "-"' <<<"$dump")
    if [[ $p == demo/web ]]; then reply="(the server)" seen=""; else
      reply=$(cat "$RUN/reply.$name") seen=$(saw "$ip"); seen=${seen:-nothing: straight to web}; fi
    printf '  %-8s %-12s %-9s %-8s %-15s %-52s %s\n' "$name" "$ns" "$enrolled" "$holds" "$reply" "$seen" "$reason"
  done
}
step() {  # runs the user's command, waits for the agent and ztunnel to settle, shows the table
  run "$@"
  settle
  traffic
  table
}

cat <<MSG

Every step below runs the user's command, then has each pod open one connection to demo/web
($WEB_IP:8080). ZTUNNEL is what Istio's ztunnel holds for the pod (its /config_dump: Up = a
proxy in the pod's netns). WHAT ZTUNNEL SAW is ztunnel's own access log: on web's side ("in"),
HBONE with the client's mTLS identity or plaintext captured on 15006, and whether web's L4
policy (demo/deny-unmeshed: deny sources outside namespaces demo and legacy; plaintext has no
namespace) let it through.
MSG
settle
say "1. Namespace demo is labelled ambient: its pods were enrolled at ADD; reports opted out."
traffic; table
say "2. Enrol the running pods of namespace legacy, without restarting them."
step kubectl label ns legacy istio.io/dataplane-mode=ambient
say "3. Take demo/client out of the mesh."
step kubectl label pod -n demo client istio.io/dataplane-mode=none
say "4. Remove the label from legacy: its pods leave the mesh (legacy/api keeps its own pod label)."
step kubectl label ns legacy istio.io/dataplane-mode-
say "5. Remove the namespace label from demo: web leaves the mesh, everyone reaches it directly."
step kubectl label ns demo istio.io/dataplane-mode-

say "ztunnel's access log over the whole demo (web's side)"
grep '^{' "$ZLOG" | jq -r --arg web "$WEB_IP" '
  select(.scope == "access" and .message == "connection complete" and .direction == "inbound"
         and (."dst.addr" | startswith($web + ":")))
  | (if (."dst.addr" | endswith(":15008")) then "HBONE" else "plaintext" end) + " " + (if .error then "denied" else "allowed" end)' |
  sort | uniq -c | sed 's/^/  /'
echo "  ztunnel ran $(jq -r .restarts "$RUN/ztunnel/status") configurations: it reads its local config once, at start, so each change"
echo "  restarted it, and each time our agent's ZDS snapshot handed it every enrolled pod again."
say "Agent metrics (excerpt)"
curl -s http://127.0.0.1:18014/metrics | grep -E '^ambient_cni_(enrolled_pods|ztunnel_connections|requests_total)' | head -8
cat <<MSG

Done; the testbed is being removed (KEEP=1 keeps $RUN with ztunnel's log). What to try next:
  - ambient-cni-node explain --pod POD.json --namespace NS.json -o json   (any kubectl -o json output)
  - ambient-cni-node redirect apply --netns /var/run/netns/X --dry-run    (the exact nft rules a pod gets)
  - scripts/test.sh                                                        (every test layer, ASan, fuzzing)
  - bench/README.md                                                        (benchmarks against their anchors)
MSG
