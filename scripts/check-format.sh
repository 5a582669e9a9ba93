#!/usr/bin/env bash
# Fails when a C++ file differs from .clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.h' '*.cc')
((${#files[@]})) || exit 0
clang-format --dry-run --Werror "${files[@]}"
