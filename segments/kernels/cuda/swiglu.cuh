// SwiGLU over fused gate/up rows (segments/kernels/cpu/swiglu.h): act[r, i] = silu(gu[r, i]) * gu[r, I + i].
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segments/core/dtype.h"

namespace segpipe::cuda {

// gu: [rows, 2I] in gt; act: [rows, I] in at (each F32 or BF16).
void swiglu_rows(const void* gu, DType gt, int64_t rows, int64_t I, void* act, DType at, cudaStream_t s);

}  // namespace segpipe::cuda
