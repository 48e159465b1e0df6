// Element conversion on the device (checkpoint dtype -> compute dtype), with the same rounding as
// the CPU (round-to-nearest-even).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segments/core/dtype.h"

namespace segpipe::cuda {

// dst[i] = src[i] converted; src F32, BF16 or F16; dst F32 or BF16.
void convert(const void* src, DType st, void* dst, DType dt, int64_t n, cudaStream_t s);

}  // namespace segpipe::cuda
