#!/usr/bin/env bash
# Compiles the CUDA library for every GPU architecture segpipe supports, on a machine without a GPU
# (nvcc needs none), so that a kernel that does not compile for one of them is caught before it lands.
# One build directory per architecture under build-archs/ (each is a full compile of segments/cuda:
# about 10 minutes on 2 cores, 1-2 on 16). Exit 1 naming the architectures that failed.
# usage: tools/cuda/check_archs.sh [ARCH...]   (default: 80 86 87 89 90 100 110 120; "90" is sm_90 with
#        the sm_90a kernels, as the default Hopper build)
set -uo pipefail
cd "$(dirname "$0")/../.."
archs=${*:-80 86 87 89 90 100 110 120}
failed=""
mkdir -p build-archs
for a in $archs; do
  b=build-archs/sm_$a
  t0=$(date +%s)
  if cmake -S . -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSEGPIPE_CUDA=ON -DSEGPIPE_MODULES="core;segments;cuda" \
       -DCMAKE_CUDA_ARCHITECTURES="$a-real" >"$b.log" 2>&1 && cmake --build "$b" -j"$(nproc)" --target segpipe_cuda >>"$b.log" 2>&1; then
    echo "sm_$a: ok ($(( $(date +%s) - t0 )) s; warnings: $(grep -c -i 'warning' "$b.log"))"
  else
    echo "sm_$a: FAILED (see $b.log)"; grep -E "error" "$b.log" | head -5
    failed="$failed sm_$a"
  fi
done
[ -z "$failed" ] && { echo "check_archs: the CUDA library compiles for: $archs"; exit 0; }
echo "check_archs: failed for:$failed"; exit 1
