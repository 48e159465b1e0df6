// What both GPU benchmarks (bench_cuda, bench_cuda_shm) check once their flags are read, before any
// work: the --dtype is one they run, and there is a CUDA device to run on.
#pragma once
#include <cstdio>
#include <string>

#include "segments/core/segment_types.h"
#include "segments/cuda/device.h"

namespace segpipe::tools {

// 0 when the benchmark can go on; else the exit code, with its message printed: 2 for an unknown
// dtype, 77 (ctest's skip code) without a CUDA device.
inline int bench_preflight(const std::string& dtype) {
  if (!parse_compute_dtype(dtype)) {
    std::fprintf(stderr, "--dtype: '%s': expected float32 or bfloat16\n", dtype.c_str());
    return 2;
  }
  if (cuda::device_count() == 0) {
    std::printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  return 0;
}

}  // namespace segpipe::tools
