#!/usr/bin/env bash
# Runs the whole test suite: builds first (tools/setup.sh) so it works on a fresh clone; then the
# unit-level modules again under AddressSanitizer + UndefinedBehaviorSanitizer (a Debug build in
# build-asan/), where a memory error, a leak or undefined behaviour fails the test that hit it.
# Last, it checks that the suite left nothing behind: no process started by it still running and no
# new entry in /dev/shm (each listed before and after; either is a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh

# Every process the suite starts inherits this marker in its environment; whatever still carries it
# after the suite is a leftover, whoever its parent is now (init, after its own parent exited).
export SEGPIPE_TEST_SUITE_RUN="$$-$RANDOM$RANDOM"
shm_before=$(ls -A /dev/shm | sort)
leftover_processes() {
  local p q cmd
  for p in $(grep -lsz "^SEGPIPE_TEST_SUITE_RUN=$SEGPIPE_TEST_SUITE_RUN\$" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do
    # This script and its own helpers (the commands computing this list) are not leftovers.
    q=$p
    while [ -n "$q" ] && [ "$q" != 1 ] && [ "$q" != 0 ] && [ "$q" != "$$" ]; do
      q=$(awk '{print $4}' "/proc/$q/stat" 2>/dev/null)
    done
    [ "$q" = "$$" ] && continue
    cmd=$({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | cut -c1-160)  # empty: gone meanwhile
    [ -n "$cmd" ] && echo "$p $cmd"
  done
  return 0
}

ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"

# The multi-process suites (cli) run in the Release build above; the sanitized build covers the code they
# share (shm, checkpoints, kernels, segment kinds, tokenizer, pipeline parser) and its fuzz replays.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSEGPIPE_SANITIZE=address,undefined \
      -DSEGPIPE_MODULES="core;shm;segments;tokenizer;pipeline" >/dev/null
cmake --build build-asan -j"$(nproc)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)" "$@"

# Leftovers. A process may still be on its way out: give stragglers a moment before judging.
left=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  left=$(leftover_processes)
  [ -z "$left" ] && break
  sleep 1
done
shm_new=$(comm -13 <(echo "$shm_before") <(ls -A /dev/shm | sort))
status=0
if [ -n "$left" ]; then
  echo "test.sh: processes started by the suite are still running:"; echo "$left"; status=1
fi
if [ -n "$shm_new" ]; then
  echo "test.sh: the suite left entries in /dev/shm:"; echo "$shm_new"; status=1
fi
[ $status -eq 0 ] && echo "test.sh: nothing left behind (no process of the suite, no new /dev/shm entry)"
exit $status
