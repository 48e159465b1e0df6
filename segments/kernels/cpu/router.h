// MoE routing as transformers computes it: softmax of the raw router logits in float32, the top-k
// probabilities (ties to the lower expert id), optionally renormalized to sum to 1.
#pragma once
#include <cstdint>

namespace segpipe {

// logits: [T, E]; experts/weights: [T, k], each token's k choices in descending probability.
void route_topk(const float* logits, int64_t T, int E, int k, bool renormalize, int32_t* experts, float* weights);

}  // namespace segpipe
