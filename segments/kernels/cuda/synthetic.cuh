// The synthetic-weight generator (segments/model/synthetic.h) on the device: element i of a tensor
// is synthetic_value(seed, name_hash, i, scale, offset), rounded to the checkpoint dtype it stands
// for, bit for bit what `segpipe make-model` writes. Full-size presets are made in GPU memory this
// way, with no files.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segments/core/dtype.h"

namespace segpipe::cuda {

// out[i] = convert(round_to(ckpt, synthetic_value(seed, name_hash, first + i, scale, offset))) for
// i < n; ckpt: F32, BF16 or F16 (the emulated checkpoint dtype); out: F32 or BF16.
void synthetic_fill(uint64_t seed, uint64_t name_hash, uint64_t first, int64_t n, float scale, float offset,
                    DType ckpt, void* out, DType ot, cudaStream_t s);

}  // namespace segpipe::cuda
