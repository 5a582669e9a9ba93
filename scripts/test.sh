#!/usr/bin/env bash
# The whole test suite, as root on Debian 12: installs packages, builds the real peers (ztunnel,
# cached), builds, runs every layer (unit, netns, e2e, soak) in the release build, again under
# ASan + UBSan, then the fuzz targets for a bounded time. Ends with one summary line over both CTest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then echo "run as root: the netns and e2e layers create network namespaces" >&2; exit 2; fi
scripts/deps.sh
scripts/check-format.sh
# Real peers the tests run against (built or fetched once into the peers cache, reused after):
# Istio's ztunnel (e2e) and Istio's source, whose nftables goldens the netns layer compares with.
echo "==> peers"
scripts/peers.sh ztunnel >/dev/null
scripts/peers.sh istio >/dev/null
# Kubernetes v1.34 (apiserver, controller manager, scheduler, kubelet, kubectl) and etcd, from the
# Go module proxy, for the cluster layer's real node (scripts/cluster.sh): ~13 minutes the first time.
scripts/peers.sh kubernetes >/dev/null
scripts/peers.sh etcd >/dev/null
# Helm 3 (Go module proxy): the chart's lint, golden and parity tests and its install on the node.
scripts/peers.sh helm >/dev/null

echo "==> release build"
scripts/build.sh release
echo "==> tests (release)"
ctest --test-dir build --output-on-failure -j2 --timeout 300 | tee build/ctest-summary.log

echo "==> ASan + UBSan build"
scripts/build.sh asan
echo "==> tests (ASan + UBSan)"
# (the soak's 2,000 steps ran in the release build; under the sanitizers a shorter walk; the
# cluster layer runs the image built from the release binaries, so it runs there only)
AMBIENT_SOAK_STEPS="${AMBIENT_ASAN_SOAK_STEPS:-500}" \
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j2 --timeout 600 -LE cluster |
  tee build-asan/ctest-summary.log

echo "==> fuzz targets (bounded)"
scripts/build.sh fuzz
scripts/fuzz.sh build-fuzz "${FUZZ_SECONDS:-20}"

# "N% tests passed, F tests failed out of T" from each run.
summary() { grep -E 'tests passed, [0-9]+ tests? failed out of' "$1" | tail -1; }
read -r rf rt < <(summary build/ctest-summary.log | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1 \2/')
read -r af at < <(summary build-asan/ctest-summary.log | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1 \2/')
echo "release: $((rt - rf)) passed, $rf failed; asan: $((at - af)) passed, $af failed"
echo "tests: $((rt - rf + at - af)) passed, $((rf + af)) failed"
