#!/usr/bin/env bash
# Runs the CUDA backend's tests and benchmarks on a GPU machine and prints a compact table last.
# Logs and JSON go to $OUT (default ./gpu-out).
#
# Binaries: where .deps/gpu-bin/ holds a full build made elsewhere (segpipe, the gpu tests, both
# benchmarks; tools/cuda/pack_gpu_bin.sh makes it, with the non-CUDA shared libraries they need in
# .deps/gpu-bin/lib), or .deps/gpu-bin.tar.xz holds it compressed (pack_gpu_bin.sh BUILD --xz: a fifth
# of the size, for transfers with a size limit), and those start here, they are used as they are. Otherwise the CUDA modules are
# built here (-DSEGPIPE_MODULES="core;segments;cuda": only the CUDA toolkit and nlohmann-json, whose
# headers .deps/ carries); that build has no shm/cli modules, so test_cuda_shm and the shm benchmark
# are then skipped.
# GPU_BIN=DIR: binaries built elsewhere for the CUDA modules alone (test_cuda_kernels,
# test_cuda_goldens, test_cuda_synthetic, segpipe_bench_cuda; only the CUDA toolkit's shared
# libraries needed), used where they start. BASE_BENCH=FILE: a segpipe_bench_cuda of an earlier
# build, run first (stage "bench") with the same arguments into bench_before.log: before and after
# on the same card in one run.
# Exit status: 0 only when every stage that ran exited 0 (a test that skips, exit 77, counts as a
# failure here: this script is run where a GPU should work); otherwise 1, naming the stages.
# usage: tools/cuda/run_on_gpu.sh [tests|bench|shm|hf|all]...
set -u
failed=""
note() {  # note NAME RC: remembers a stage that did not exit 0
  [ "$2" -eq 0 ] || failed="$failed $1(rc=$2)"
}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
stages="${*:-all}"
has() { [[ " $stages " == *" $1 "* || " $stages " == *" all "* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv >"$OUT/gpu.txt" 2>&1
date -u >>"$OUT/gpu.txt"
t0=$(date +%s)
BIN=""
if [ -n "${GPU_BIN:-}" ] && [ -x "$GPU_BIN/test_cuda_kernels" ]; then
  export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
  if ! ldd "$GPU_BIN"/* 2>&1 | tee "$OUT/prebuilt.log" | grep -q "not found"; then
    BIN=$GPU_BIN
    echo "binaries: prebuilt ($GPU_BIN)"
  else
    echo "prebuilt binaries ($GPU_BIN) do not start here:"; cat "$OUT/prebuilt.log"
  fi
elif [ -x .deps/gpu-bin/segpipe ] || { [ -f .deps/gpu-bin.tar.xz ] && tar xJf .deps/gpu-bin.tar.xz -C .deps; }; then
  export LD_LIBRARY_PATH="$PWD/.deps/gpu-bin/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
  if .deps/gpu-bin/segpipe --help >/dev/null 2>"$OUT/prebuilt.log" &&
     ! ldd .deps/gpu-bin/test_* .deps/gpu-bin/segpipe_* 2>&1 | tee -a "$OUT/prebuilt.log" | grep -q "not found"; then
    BIN=.deps/gpu-bin
    echo "binaries: prebuilt (.deps/gpu-bin)"
  else
    echo "prebuilt binaries do not start here:"; cat "$OUT/prebuilt.log"
  fi
fi
if [ -z "$BIN" ]; then
  prefix=""
  [ -d /usr/include/nlohmann ] || prefix="-DCMAKE_PREFIX_PATH=$PWD/.deps"
  if ! { cmake -S . -B build-cuda -G Ninja -DSEGPIPE_CUDA=ON -DSEGPIPE_MODULES="core;segments;cuda" $prefix &&
         cmake --build build-cuda -j16; } >"$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
  fi
  mkdir -p build-cuda/bin
  for f in tests/cuda/test_cuda_kernels tests/cuda/test_cuda_synthetic tests/cuda/test_cuda_goldens tools/cuda/segpipe_bench_cuda; do
    ln -sf "$PWD/build-cuda/$f" build-cuda/bin/
  done
  BIN=build-cuda/bin
  echo "build: $(( $(date +%s) - t0 )) s"
fi
# Order: what the newest work depends on first; each stage has its own time limit.
run_t() {  # run_t LIMIT NAME ARGS...: $BIN/NAME, log in $OUT/NAME.log
  local lim=$1 name=$2; shift 2
  [ -x "$BIN/$name" ] || return 0
  local rc=0
  timeout "$lim" "$BIN/$name" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
  echo "$name rc=$rc" >>"$OUT/$name.log"
  note "$name${STAGE_TAG:-}" "$rc"
}
has tests && run_t 180 test_cuda_kernels
# test_cuda_shm twice: GPU processes with their own contexts, then through a private MPS server.
if has tests; then
  SEGPIPE_GPU_SHARING=off STAGE_TAG=_off run_t 200 test_cuda_shm --source "$PWD"
  [ -f "$OUT/test_cuda_shm.log" ] && mv "$OUT/test_cuda_shm.log" "$OUT/test_cuda_shm_off.log" &&
    SEGPIPE_GPU_SHARING=mps STAGE_TAG=_mps run_t 200 test_cuda_shm --source "$PWD" &&
    mv "$OUT/test_cuda_shm.log" "$OUT/test_cuda_shm_mps.log"
fi
if has shm; then
  STAGE_TAG=_off run_t 180 segpipe_bench_cuda_shm --groups 4 --sharing off ${SHM_ARGS:-}
  [ -f "$OUT/segpipe_bench_cuda_shm.log" ] && mv "$OUT/segpipe_bench_cuda_shm.log" "$OUT/segpipe_bench_cuda_shm_off.log"
  STAGE_TAG=_mps run_t 180 segpipe_bench_cuda_shm --groups 4 --sharing mps ${SHM_ARGS:-}
  [ -f "$OUT/segpipe_bench_cuda_shm.log" ] && mv "$OUT/segpipe_bench_cuda_shm.log" "$OUT/segpipe_bench_cuda_shm_mps.log"
  if [ -x "$BIN/segpipe_bench_cuda_shm" ]; then
    rc=0; bash tools/cuda/check_mps_cleanup.sh "$BIN" >"$OUT/mps_cleanup.log" 2>&1 || rc=$?
    note mps_cleanup "$rc"
  fi
fi
if has bench && [ -n "${BASE_BENCH:-}" ] && [ -x "$BASE_BENCH" ]; then
  rc=0; timeout 180 "$BASE_BENCH" ${BENCH_ARGS:-} >"$OUT/bench_before.log" 2>&1 || rc=$?
  echo "bench_before rc=$rc" >>"$OUT/bench_before.log"; note bench_before "$rc"
fi
has bench && run_t 180 segpipe_bench_cuda ${BENCH_ARGS:-}
has tests && run_t 90 test_cuda_goldens "$PWD/models"
has tests && run_t 60 test_cuda_synthetic
if has hf; then
  rc=0; PYTHONUNBUFFERED=1 timeout 300 python3 tools/cuda/hf_bench.py --layers "${HF_LAYERS:-48}" --json "$OUT/hf.json" \
    >"$OUT/hf.log" 2>&1 || rc=$?
  echo "hf rc=$rc" >>"$OUT/hf.log"; note hf "$rc"
fi
echo "================ summary ================"
cat "$OUT/gpu.txt"
for t in test_cuda_kernels test_cuda_synthetic test_cuda_goldens test_cuda_shm_off test_cuda_shm_mps; do
  [ -f "$OUT/$t.log" ] && { grep -E "FAIL|error|rc=" "$OUT/$t.log" | head -20; grep -E "passed, " "$OUT/$t.log"; }
done
[ -f "$OUT/test_cuda_shm_mps.log" ] && grep -E "^  ok" "$OUT/test_cuda_shm_mps.log" | cut -c1-200
b=$OUT/bench_before.log
[ -f "$b" ] && { echo "---- before (BASE_BENCH) ----"; sed -n '/== segpipe_bench_cuda/,$p' "$b"; grep -q "== segpipe_bench_cuda" "$b" || tail -5 "$b"; echo "---- after ----"; }
b=$OUT/segpipe_bench_cuda.log
[ -f "$b" ] && { sed -n '/== segpipe_bench_cuda/,$p' "$b"; grep -q "== segpipe_bench_cuda" "$b" || tail -5 "$b"; }
for b in "$OUT"/segpipe_bench_cuda_shm_off.log "$OUT"/segpipe_bench_cuda_shm_mps.log; do
  [ -f "$b" ] && { sed -n '/== segpipe_bench_cuda_shm/,$p' "$b"; grep -q "== segpipe_bench_cuda_shm" "$b" || tail -5 "$b"; }
done
[ -f "$OUT/mps_cleanup.log" ] && grep "^left" "$OUT/mps_cleanup.log"
[ -f "$OUT/hf.log" ] && tail -6 "$OUT/hf.log"
if [ -n "$failed" ]; then
  echo "FAILED stages:$failed"
  exit 1
fi
echo "all stages passed"
exit 0
