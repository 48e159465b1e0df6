#!/usr/bin/env bash
# Copies a full CUDA build's binaries (segpipe, the gpu tests, both CUDA benchmarks) and the
# non-CUDA shared libraries they load into .deps/gpu-bin/, for run_on_gpu.sh on a GPU machine that
# lacks the build's Debian libraries (yaml-cpp, pcre2, utf8proc). .deps/ is ignored by git.
# usage: tools/cuda/pack_gpu_bin.sh BUILD_DIR   (configured with -DSEGPIPE_CUDA=ON, all modules)
set -eu
b=${1:?usage: pack_gpu_bin.sh BUILD_DIR}
d=.deps/gpu-bin
rm -rf "$d"; mkdir -p "$d/lib"
for f in segpipe tests/cuda/test_cuda_kernels tests/cuda/test_cuda_synthetic tests/cuda/test_cuda_goldens \
         tests/cuda/test_cuda_shm tools/cuda/segpipe_bench_cuda tools/cuda/segpipe_bench_cuda_shm; do
  cp "$b/$f" "$d/"; strip "$d/$(basename "$f")"
done
for f in "$d"/*; do [ -f "$f" ] && ldd "$f"; done | awk '/=> \// {print $3}' | sort -u |
  grep -E 'yaml-cpp|pcre2|utf8proc|fmt|spdlog' | while read -r l; do cp -L "$l" "$d/lib/"; done
du -sh "$d"
