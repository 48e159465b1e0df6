#!/usr/bin/env bash
# Runs the whole test suite: builds first (tools/setup.sh) so it works on a fresh clone; then the
# unit-level modules again under AddressSanitizer + UndefinedBehaviorSanitizer (a Debug build in
# build-asan/), where a memory error, a leak or undefined behaviour fails the test that hit it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"

# The multi-process suites (cli) run in the Release build above; the sanitized build covers the code they
# share (shm, checkpoints, kernels, segment kinds, tokenizer, pipeline parser) and its fuzz replays.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSEGPIPE_SANITIZE=address,undefined \
      -DSEGPIPE_MODULES="core;shm;segments;tokenizer;pipeline" >/dev/null
cmake --build build-asan -j"$(nproc)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)" "$@"
