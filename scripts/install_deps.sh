#!/usr/bin/env bash
# Installs what tilecodec's build, tests and demo need on a fresh Debian/Ubuntu machine.
# Idempotent: packages already present are skipped. The CUDA toolkit is expected to be there
# already (nvcc on PATH or in /usr/local/cuda); without it the host half still builds and tests.
set -euo pipefail

packages=(cmake ninja-build g++ python3 python3-pip doctest-dev libbenchmark-dev nlohmann-json3-dev
          libxxhash-dev libcli11-dev clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install_deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "install_deps: nvcc found in /usr/local/cuda/bin (add it to PATH)"
fi
echo "install_deps: ok"
