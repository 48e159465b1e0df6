#!/usr/bin/env bash
# Sets segpipe up on a fresh Debian 12 machine: system packages, then a Release build to build/segpipe.
# Idempotent: packages already present are not reinstalled, and the build is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
pkgs=(build-essential cmake ninja-build pkg-config git
      libyaml-cpp-dev libspdlog-dev libboost-dev nlohmann-json3-dev
      libpcre2-dev libutf8proc-dev libgtest-dev libgmock-dev
      clang libclang-rt-14-dev
      libsndfile1-dev libsoxr-dev libfftw3-dev  # audio inputs: decoding, resampling, log-mel features
      libpng-dev libjpeg62-turbo-dev zlib1g-dev  # image inputs (zlib: the PNG tests build files)
      openmpi-bin libopenmpi-dev iproute2  # multi-host runs: the MPI launcher and library; simulated hosts
      chromium)  # headless: the memory report page test (tests/integration_debug)
# Node.js runs the tokenizer reference (npm package) in the tests; keep a newer one if present.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
echo "setup: built build/segpipe"
