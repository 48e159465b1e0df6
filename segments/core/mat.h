// A read-only view of a row-major weight matrix in its checkpoint dtype: what the tensor map binds and
// the kernels of every backend read. Here, not beside a kernel, so that the model layer and the CUDA
// backend need no CPU kernel header to name a weight.
#pragma once
#include <cstdint>

#include "segments/core/dtype.h"

namespace segpipe {

struct Mat {
  const void* data = nullptr;  // row-major [rows, cols]
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  uint64_t bytes() const { return static_cast<uint64_t>(rows * cols) * dtype_size(dtype); }
};

}  // namespace segpipe
