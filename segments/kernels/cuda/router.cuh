// MoE routing (segments/kernels/cpu/router.h): softmax of the raw router logits in float32, the
// top-k probabilities in descending order (ties to the lower expert id), optionally renormalized.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace segpipe::cuda {

// logits: [T, E] float32 (E <= 512, k <= min(E, 32)); experts/weights: [T, k].
void route_topk(const float* logits, int64_t T, int E, int k, bool renormalize, int32_t* experts, float* weights,
                cudaStream_t s);

}  // namespace segpipe::cuda
