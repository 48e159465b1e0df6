// Embedding gather: out[t, :] = float32(table[ids[t], :]). Ids are checked on the host first; on the
// device an id outside [0, rows) (kNonFiniteToken from a greedy chain whose logits went non-finite)
// reads nothing and gives a row of NaN, so the marker carries on down the chain.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segments/core/dtype.h"

namespace segpipe::cuda {

// table: [rows, H] in F32 or BF16 on the device; ids: [T] on the device.
void embed_gather(const int32_t* ids, int64_t T, const void* table, DType dt, int64_t rows, int64_t H, float* out,
                  cudaStream_t s);

}  // namespace segpipe::cuda
