#!/bin/sh
# The CUDA build configures with CMake's default generator (Unix Makefiles), as the README's GPU
# instructions use it: it used to stop at generate time ('Target "segpipe_bench_cuda" requires the
# language dialect "CUDA20"'), while only Ninja worked. Configures into a fresh temporary folder;
# builds nothing. Skipped (77) where no CUDA compiler is installed.
# usage: cuda_configure_makefiles.sh SOURCE_DIR CMAKE
src="$1"
cmake="${2:-cmake}"
command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ] || { echo "no nvcc: skipped"; exit 77; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/segpipe-cuda-configure-XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
if "$cmake" -S "$src" -B "$dir" -G "Unix Makefiles" -DSEGPIPE_CUDA=ON >"$dir/configure.log" 2>&1; then
  echo "configured with Unix Makefiles"
  exit 0
fi
cat "$dir/configure.log"
exit 1
