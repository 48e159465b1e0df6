#!/bin/sh
# tools/cuda/run_on_gpu.sh exits non-zero when a stage fails (and 0 when all pass): run against stub
# test binaries (GPU_BIN) that fail or pass, on any machine.
# usage: run_on_gpu_status.sh SOURCE_DIR
set -u
src=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/segpipe-gpustatus-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
stub() { printf '#!/bin/sh\necho "%s: 1 passed, 0 failed, 0 skipped"\nexit %s\n' "$1" "$2" >"$tmp/bin/$1"; chmod +x "$tmp/bin/$1"; }
run() { (cd "$src" && OUT="$tmp/out" GPU_BIN="$tmp/bin" bash tools/cuda/run_on_gpu.sh tests >"$tmp/log" 2>&1); }
status=0
stub test_cuda_kernels 1; stub test_cuda_goldens 0; stub test_cuda_synthetic 77
run; rc=$?
if [ "$rc" -eq 0 ] || ! grep -q "FAILED stages:.*test_cuda_kernels.*test_cuda_synthetic" "$tmp/log"; then
  echo "FAIL: a failing and a skipping stage: rc=$rc"; cat "$tmp/log"; status=1
fi
stub test_cuda_kernels 0; stub test_cuda_synthetic 0
run; rc=$?
if [ "$rc" -ne 0 ] || ! grep -q "all stages passed" "$tmp/log"; then
  echo "FAIL: every stage passing: rc=$rc"; cat "$tmp/log"; status=1
fi
[ "$status" -eq 0 ] && echo "run_on_gpu.sh: exit status follows its stages"
exit "$status"
