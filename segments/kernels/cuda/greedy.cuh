// Greedy decoding on the device: the next token of a decode step chosen where the logits are, and
// written where the next step reads its input, so that a chain of decode steps (CUDA graph replays)
// runs without a host round trip per token.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segments/kernels/cuda/device_caps.h"

namespace segpipe::cuda {

// Device state of a greedy chain. ids[0] and pos[0] are the decode step's input token and position;
// tokens[step[0]] receives each chosen token. part_val / part_idx hold greedy_blocks() entries,
// ticket starts at 0 and is left at 0.
struct GreedyState {
  int32_t* ids = nullptr;
  int32_t* pos = nullptr;
  int32_t* tokens = nullptr;
  int32_t* step = nullptr;
  float* part_val = nullptr;
  int32_t* part_idx = nullptr;
  unsigned* ticket = nullptr;
};

// The token written when the row holds a NaN or Inf (the host's non-finite check, on the device): the
// chain's later steps read it as their input, so the caller checks the tokens it gets for it.
inline constexpr int32_t kNonFiniteToken = -1;

// Blocks of greedy_next_token (the size of part_val / part_idx).
int greedy_blocks();

// t = the first maximum of logits[0..n) (the lowest index among equal maxima: the host sampler's
// sequential scan `v[i] > v[best]` and torch.argmax's choice), or kNonFiniteToken when any logit is
// NaN or Inf; then ids[0] = t, tokens[step[0]] = t, step[0] += 1, pos[0] += 1. Programmatic launch
// after the lm_head where path.pdl.
void greedy_next_token(const float* logits, int64_t n, const GreedyState& g, const KernelPath& path, cudaStream_t s);

}  // namespace segpipe::cuda
