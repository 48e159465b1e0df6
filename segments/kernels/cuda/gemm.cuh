// Matrix products through cuBLAS, in the engine's one orientation: y[T, rows] = x[T, cols] · W^T for
// a row-major weight W [rows, cols] (the checkpoint layout), with float32 accumulation and a
// float32 result. Inputs are both F32 (verification: no TF32, full float32 products) or both BF16
// (speed: tensor cores, bf16 inputs, fp32 accumulation).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "segments/core/dtype.h"

namespace segpipe::cuda {

// y (row stride ldy, dtype yt: F32, or dt itself) = x · W^T + beta * y. The handle's stream orders it.
void gemm_xwT(cublasHandle_t h, const void* x, const void* w, DType dt, int64_t T, int64_t rows, int64_t cols,
              void* y, int64_t ldy, float beta, DType yt = DType::F32);

struct GemmProblem {
  const void* x;  // [T, cols]
  const void* w;  // [rows, cols]
  void* y;        // [T, rows], in the operands' dtype (what the grouped call supports)
  int64_t T;
};

// Several products with one weight shape (a layer's experts), results in dt. grouped: one
// cublasGemmGroupedBatchedEx call (falls back to one call per product, once reported, where the
// library does not support the types); d_ptrs: device scratch of at least 3 * ps.size() pointers.
void gemm_xwT_many(cublasHandle_t h, const std::vector<GemmProblem>& ps, DType dt, int64_t rows, int64_t cols,
                   void** d_ptrs, bool grouped, cudaStream_t s);

}  // namespace segpipe::cuda
