// Decode (one token): the attention block's two steps after the q/k/v product in one kernel,
// attention (q/k-norm, RoPE and the KV-cache write folded in, as attention_decode_rope) and the output
// projection with its residual add, x += W_o · att. W_o is split by head: x += sum over heads h of
// W_o[:, h] · att_h, so the blocks of head h multiply their rows of W_o[:, h] as soon as att_h is
// known, and those rows (weights, independent of the step) are copied into shared memory before the
// kernel waits for the q/k/v product: the 16.8 MB of the Omni thinker's W_o stream in while the
// previous kernel finishes and while the attention's dependent chain runs, instead of after it.
//
// A head's S blocks form a thread-block cluster: block s takes keys j = (s + S i) 16 + warp (the split
// kernel's scheme at S splits, attention_decode_common.cuh), the S partials are merged through
// distributed shared memory in split order (every block of the cluster computes the same att_h), and
// block s multiplies rows [s R, (s + 1) R) of W_o[:, h] (R = ceil(H / S)). Each block writes its rows'
// head partials; the block that finishes a row slice last (a counter per slice) adds the slice's
// nh partials in head order to x. Summation order therefore differs from attention_decode_rope +
// gemv (a different but fixed grouping): deterministic, the same bits in every run and in every
// segmentation of the model.
//
// Measured on an H200 (docs/benchmarks-cuda.md): slower in the decode graph (3.42-3.54 against
// 3.03-3.06 ms/token). The Omni shape needs 32 clusters of 4 blocks that each take a whole
// multiprocessor (139 KB of W_o rows), and only 30 such clusters fit at once, so two heads run in a
// second wave; with every head resident a block walking its head's keys whole (no cluster) was as
// fast as the two kernels (3.050 against 3.040), not faster: the o_proj blocks of the two-kernel path
// already load their first rows while the attention runs. Off by default; kept as the tested
// attention half of a persistent per-layer kernel.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "segments/core/dtype.h"
#include "segments/kernels/cuda/attention.cuh"

namespace segpipe::cuda {

// Blocks per head (cluster size) for this shape and weight dtype; 0 where the kernel does not take
// it (its rows of W_o[:, h] would not fit in shared memory, head_dim not a multiple of 8, or more than
// 256).
int attention_oproj_split(const AttnShape& s, int64_t hidden, DType wt);
// Scratch floats (the head partials, [num_heads, hidden]) and counters (zero before the first call;
// each call leaves them zero).
size_t attention_oproj_scratch_floats(const AttnShape& s, int64_t hidden);
constexpr int kAttentionOprojCounters = 8;

// qkv: the step's raw [q | k | v] row (float32); k_cache / v_cache: float32 caches, row pos0 written;
// wo: [hidden, num_heads * head_dim] in wt (F32 or BF16); x: [hidden] float32, x += W_o · att.
void attention_oproj(const float* qkv, const int32_t* d_pos0, const AttnShape& s, const float* q_norm,
                     const float* k_norm, float eps, const float* inv_freq, float* k_cache, float* v_cache,
                     float scale, const void* wo, DType wt, int64_t hidden, float* x, float* scratch,
                     unsigned* counters, cudaStream_t st);

// Whether the decode layers use it (where attention_oproj_split allows). Off by default: on an H200
// the decode step is no faster with it (docs/benchmarks-cuda.md). Process-wide; graphs captured under
// one setting must be re-captured after a change.
void set_decode_attention_oproj(bool on);
bool decode_attention_oproj();
// Benchmarks: blocks per head forced (1, 2, 4 or 8; 0 = chosen by attention_oproj_split), and how many
// clusters of the chosen shape can be resident at once (cudaOccupancyMaxActiveClusters).
void set_attention_oproj_split(int blocks);
int attention_oproj_max_clusters(const AttnShape& s, int64_t hidden, DType wt);

}  // namespace segpipe::cuda
