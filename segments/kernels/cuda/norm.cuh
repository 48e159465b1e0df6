// RMSNorm as transformers computes it (and segments/kernels/cpu/rmsnorm.h): per row of n values,
// x * rsqrt(mean(x^2) + eps), then weight * that. The mean of squares is accumulated in double,
// as on the CPU, so the two backends differ only in the order of that double sum.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segments/core/dtype.h"

namespace segpipe::cuda {

// x: [rows, n] float32; weight: [n] float32; y: [rows, n] in yt (F32 or BF16); y may alias x when yt is F32.
void rmsnorm(const float* x, int64_t rows, int64_t n, const float* weight, float eps, void* y, DType yt, cudaStream_t s);

}  // namespace segpipe::cuda
