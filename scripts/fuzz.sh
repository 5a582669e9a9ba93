#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: scripts/fuzz.sh BUILD_DIR SECONDS_EACH
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${2:-20}
failed=0
for corpus in tests/fuzz/corpus/*/; do
  name=$(basename "$corpus")
  work=$(mktemp -d)
  cp "$corpus"/* "$work"/
  if "$build/bin/fuzz_$name" -max_total_time="$seconds" -print_final_stats=0 "$work" >"$work.log" 2>&1; then
    echo "fuzz_$name: no crash in ${seconds}s ($(grep -c . "$work.log" || true) log lines)"
  else
    echo "fuzz_$name: FAILED"; tail -40 "$work.log"; failed=1
  fi
  rm -rf "$work" "$work.log"
done
exit $failed
