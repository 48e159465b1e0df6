#!/usr/bin/env bash
# On a GPU machine: a private MPS server (orchestrator/cuda_mps.h) and the GPU workers go away with
# their run, after a normal exit and after the orchestrator is SIGKILLed mid-decode; prints what is
# left (nothing, when all is well).
# usage: tools/cuda/check_mps_cleanup.sh [BIN_DIR holding segpipe_bench_cuda_shm]
set -u
BIN=${1:-.deps/gpu-bin}
left() {
  pgrep -a -f 'nvidia-cuda-mps' || true
  ls -d /tmp/segpipe-mps-* 2>/dev/null || true
  pgrep -a -f 'segpipe_bench_cuda_shm' || true
}
echo "== normal exit"
"$BIN/segpipe_bench_cuda_shm" --layers 4 --groups 2 --decode 8 --sharing mps 2>&1 | tail -4
sleep 1
echo "left after a normal exit: [$(left | tr '\n' ' ')]"
echo "== orchestrator SIGKILLed while decoding"
"$BIN/segpipe_bench_cuda_shm" --groups 2 --decode 470 --sharing mps >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do pgrep -f "__worker" >/dev/null && break; sleep 0.1; done
sleep 1
echo "running:"; ps -eo pid,pgid,ppid,comm | grep -E "mps|segpipe" | grep -v grep
kill -9 "$pid"
sleep 3
echo "left after SIGKILL: [$(left | tr '\n' ' ')]"
pkill -9 -f nvidia-cuda-mps 2>/dev/null; rm -rf /tmp/segpipe-mps-*
exit 0
