#!/usr/bin/env bash
# The whole test suite, as root on Debian 12: installs packages, builds, runs every layer
# (unit, netns, e2e) in the release build, again under ASan + UBSan, then the fuzz targets
# for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then echo "run as root: the netns and e2e layers create network namespaces" >&2; exit 2; fi
scripts/deps.sh
scripts/check-format.sh

echo "==> release build"
scripts/build.sh release
echo "==> tests (release)"
ctest --test-dir build --output-on-failure -j2 --timeout 300

echo "==> ASan + UBSan build"
scripts/build.sh asan
echo "==> tests (ASan + UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j2 --timeout 600

echo "==> fuzz targets (bounded)"
scripts/build.sh fuzz
scripts/fuzz.sh build-fuzz "${FUZZ_SECONDS:-20}"

echo "==> all layers passed"
