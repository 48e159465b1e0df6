#!/usr/bin/env bash
# Copies a full CUDA build's binaries (segpipe, the gpu tests, both CUDA benchmarks) and the
# non-CUDA shared libraries they load into .deps/gpu-bin/, for run_on_gpu.sh on a GPU machine that
# lacks the build's Debian libraries (yaml-cpp, pcre2, utf8proc). .deps/ is ignored by git.
# usage: tools/cuda/pack_gpu_bin.sh BUILD_DIR [--xz]   (configured with -DSEGPIPE_CUDA=ON -DSEGPIPE_MPI=OFF,
#        all modules)
# --xz: also .deps/gpu-bin.tar.xz (about a fifth of the size), which run_on_gpu.sh unpacks when
# .deps/gpu-bin/ is absent: carry that file alone where what travels has a size limit.
set -eu
b=${1:?usage: pack_gpu_bin.sh BUILD_DIR [--xz]}
d=.deps/gpu-bin
rm -rf "$d"; mkdir -p "$d/lib"
for f in segpipe tests/cuda/test_cuda_kernels tests/cuda/test_cuda_synthetic tests/cuda/test_cuda_goldens \
         tests/cuda/test_cuda_shm tools/cuda/segpipe_bench_cuda tools/cuda/segpipe_bench_cuda_shm tools/cuda/segpipe_compare_cuda; do
  cp "$b/$f" "$d/"; strip "$d/$(basename "$f")"
done
# MPI (runs across hosts) is not carried: its libraries and launcher are a system install. A GPU pack is
# built without it (-DSEGPIPE_MPI=OFF), or it would not start on a GPU machine that lacks Open MPI.
if ldd "$d/segpipe" | grep -q 'libmpi'; then
  echo "pack_gpu_bin: $b links MPI; configure the GPU pack's build with -DSEGPIPE_MPI=OFF" >&2
  exit 2
fi
for f in "$d"/*; do [ -f "$f" ] && ldd "$f"; done | awk '/=> \// {print $3}' | sort -u |
  grep -E 'yaml-cpp|pcre2|utf8proc|fmt|spdlog' | while read -r l; do cp -L "$l" "$d/lib/"; done
du -sh "$d"
if [ "${2:-}" = "--xz" ]; then
  tar cJf .deps/gpu-bin.tar.xz -C .deps gpu-bin
  du -sh .deps/gpu-bin.tar.xz
fi
