#!/usr/bin/env bash
# Runs the whole test suite: builds first (tools/setup.sh) so it works on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
