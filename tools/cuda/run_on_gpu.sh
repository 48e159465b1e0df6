#!/usr/bin/env bash
# Builds the CUDA backend on a GPU machine that has only the CUDA toolkit and nlohmann-json (carried
# in .deps/ when the machine lacks it), runs the gpu-labelled tests, then the benchmarks. Logs and
# JSON go to $OUT (default ./gpu-out); a compact table is printed last.
# usage: tools/cuda/run_on_gpu.sh [tests|bench|hf|all]...
set -u
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
stages="${*:-all}"
has() { [[ " $stages " == *" $1 "* || " $stages " == *" all "* ]]; }
prefix=""
[ -d /usr/include/nlohmann ] || prefix="-DCMAKE_PREFIX_PATH=$PWD/.deps"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv >"$OUT/gpu.txt" 2>&1
date -u >>"$OUT/gpu.txt"
t0=$(date +%s)
if ! { cmake -S . -B build-cuda -G Ninja -DSEGPIPE_CUDA=ON -DSEGPIPE_MODULES="core;segments;cuda" $prefix &&
       cmake --build build-cuda -j16; } >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
fi
echo "build: $(( $(date +%s) - t0 )) s"
if has tests; then
  (cd build-cuda && ./tests/cuda/test_cuda_kernels; ./tests/cuda/test_cuda_synthetic; ./tests/cuda/test_cuda_goldens) \
    >"$OUT/tests.log" 2>&1
  ctest --test-dir build-cuda -L gpu >"$OUT/ctest.log" 2>&1
fi
if has bench; then
  timeout 300 ./build-cuda/tools/cuda/segpipe_bench_cuda --json "$OUT/bench.json" >"$OUT/bench.log" 2>&1
  echo "bench rc=$?" >>"$OUT/bench.log"
fi
if has hf; then
  PYTHONUNBUFFERED=1 timeout 300 python3 tools/cuda/hf_bench.py --layers "${HF_LAYERS:-48}" --json "$OUT/hf.json" \
    >"$OUT/hf.log" 2>&1
  echo "hf rc=$?" >>"$OUT/hf.log"
fi
echo "================ summary ================"
cat "$OUT/gpu.txt"
[ -f "$OUT/tests.log" ] && { grep -E "FAIL|error|passed, |  ok .*(float32|bfloat16)" "$OUT/tests.log" | head -60; tail -4 "$OUT/ctest.log"; }
[ -f "$OUT/bench.log" ] && sed -n '/== segpipe_bench_cuda/,$p' "$OUT/bench.log"
[ -f "$OUT/hf.log" ] && tail -6 "$OUT/hf.log"
exit 0
