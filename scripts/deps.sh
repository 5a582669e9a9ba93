#!/usr/bin/env bash
# Installs the Debian 12 packages ambient-cni builds, tests and demos with. Idempotent.
set -euo pipefail
packages=(
  build-essential cmake pkg-config clang libclang-rt-14-dev clang-format
  nlohmann-json3-dev libspdlog-dev libfmt-dev libyaml-cpp-dev libcli11-dev
  libcurl4-openssl-dev libssl-dev libcpp-httplib-dev
  libnftables-dev libnl-3-dev libnl-route-3-dev
  libprotobuf-dev protobuf-compiler
  libgtest-dev libgmock-dev libbenchmark-dev
  nftables iptables iproute2 containernetworking-plugins hyperfine jq socat curl
  containerd runc busybox-static podman libgrpc++-dev protobuf-compiler-grpc
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
