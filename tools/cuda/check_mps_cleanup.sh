#!/usr/bin/env bash
# On a GPU machine: a private MPS server (orchestrator/drivers/cuda_mps.h) and the GPU workers go away with
# their run, after a normal exit and after the orchestrator is SIGKILLed mid-decode; prints what is
# left (nothing, when all is well) and exits 1 when something is.
# Only this script's own runs are looked at and cleaned up: the MPS directories that appeared under
# the temp folder since it started, and the processes whose CUDA_MPS_PIPE_DIRECTORY is one of them or
# that descend from the benchmarks it started. Other runs' servers and directories on the same host
# are left alone (no killing by name, no removing by pattern).
# usage: tools/cuda/check_mps_cleanup.sh [BIN_DIR holding segpipe_bench_cuda_shm]
set -u
BIN=${1:-.deps/gpu-bin}
TMP=${TMPDIR:-/tmp}
before=$(ls -d "$TMP"/segpipe-mps-* 2>/dev/null | sort)
ours_dirs() {  # MPS directories created since this script started
  comm -13 <(echo "$before") <(ls -d "$TMP"/segpipe-mps-* 2>/dev/null | sort) | grep -v '^$' || true
}
ours_pids() {  # MPS daemons serving one of our directories, and what is left of the benchmark runs
  local d p
  for d in $(ours_dirs); do
    for p in $(pgrep -u "$(id -u)" -f 'nvidia-cuda-mps' 2>/dev/null); do
      tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "CUDA_MPS_PIPE_DIRECTORY=$d" && echo "$p"
    done
  done
  for p in ${bench_pids:-}; do
    kill -0 "$p" 2>/dev/null && echo "$p"
    pgrep -s "$p" 2>/dev/null || true   # its session: the benchmark runs setsid, so workers are in it
  done
}
left() { { ours_pids; ours_dirs; } | sort -u | tr '\n' ' '; }
bench_pids=""
echo "== normal exit"
setsid "$BIN/segpipe_bench_cuda_shm" --layers 4 --groups 2 --decode 8 --sharing mps 2>&1 | tail -4
sleep 1  # not synchronization: the daemons' own shutdown, which we then check
after_normal=$(left)
echo "left after a normal exit: [$after_normal]"
echo "== orchestrator SIGKILLed while decoding"
setsid "$BIN/segpipe_bench_cuda_shm" --groups 2 --decode 470 --sharing mps >/dev/null 2>&1 &
pid=$!
bench_pids=$pid
for _ in $(seq 1 600); do pgrep -s "$pid" -f "__worker" >/dev/null && break; sleep 0.1; done
sleep 1
echo "running:"; ps -o pid,pgid,ppid,comm -s "$pid" 2>/dev/null
kill -9 "$pid"
sleep 3  # the workers' parent-death signal and the MPS server's idle exit, which we then check
after_kill=$(left)
echo "left after SIGKILL: [$after_kill]"
# Clean up only what our own runs left.
for p in $(ours_pids); do kill -9 "$p" 2>/dev/null; done
for d in $(ours_dirs); do rm -rf "$d"; done
[ -z "${after_normal// /}" ] && [ -z "${after_kill// /}" ]
