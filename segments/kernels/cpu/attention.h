// Causal grouped-query attention over a KV cache, one query row at a time: a query at absolute
// position p attends to cache rows 0..p. Because each (token, head) is computed the same way
// whether it arrives in a prefill batch or alone in decode, cached decode equals full recomputation.
#pragma once
#include <cstdint>

#include "segments/kernels/cpu/thread_pool.h"

namespace segpipe {

struct AttentionShape {
  int num_heads;
  int num_kv_heads;
  int head_dim;
};

// q: [T, num_heads*head_dim] (normed, rotated); k_cache/v_cache: [max_seq, num_kv_heads*head_dim]
// already holding rows 0..pos0+T-1; out: [T, num_heads*head_dim].
void attention(ThreadPool& pool, const AttentionShape& s, const float* q, int64_t T, int64_t pos0,
               const float* k_cache, const float* v_cache, float* out);

}  // namespace segpipe
