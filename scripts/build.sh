#!/usr/bin/env bash
# Configures and builds one flavour: `scripts/build.sh` (release, build/) or
# `scripts/build.sh asan` (ASan + UBSan, build-asan/) or `scripts/build.sh fuzz` (clang, build-fuzz/).
# Further arguments name the targets to build (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
shift || true
targets=("$@")
jobs=$(nproc)
case "$flavour" in
  release) dir=build; args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  asan) dir=build-asan; args=(-DCMAKE_BUILD_TYPE=Debug -DAMBIENT_SANITIZE=ON -DAMBIENT_BUILD_BENCH=OFF) ;;
  fuzz) dir=build-fuzz; args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DAMBIENT_FUZZ=ON -DAMBIENT_BUILD_BENCH=OFF
          -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++) ;;
  *) echo "unknown flavour $flavour (release|asan|fuzz)" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" "${args[@]}" >/dev/null
if [[ $flavour == fuzz ]]; then
  cmake --build "$dir" -j"$jobs" --target fuzzers
elif ((${#targets[@]})); then
  cmake --build "$dir" -j"$jobs" --target "${targets[@]}"
else
  cmake --build "$dir" -j"$jobs"
fi
