// The attention block's per-head step between the QKV projection and attention, fused: the q/k/v
// biases where the layer has them (added to the product's float32 row, as the CPU's add_bias), q_norm
// and k_norm (RMSNorm over head_dim, as segments/kernels/cpu/rmsnorm.h) where it has a q/k norm,
// rotate-half RoPE (dimension i pairs with i + head_dim/2, as segments/kernels/cpu/rope.h) at
// positions pos0 + t, and the writes of K and V into the cache. pos0 is read from device memory so
// that a captured decode step (CUDA graph) replays at any position. What differs between
// architectures is passed, not baked in: a null bias adds nothing, null norm weights skip the norm
// (ModelConfig::qkv_bias, ::qk_norm).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

namespace segpipe::cuda {

struct QkvShape {
  int num_heads;
  int num_kv_heads;
  int head_dim;  // even, at most 256
};

// inv_freq as the CPU's Rope computes it (float32, 1 / theta^(2i/head_dim)); upload it once.
std::vector<float> rope_inv_freq(int head_dim, double theta);

// qkv: [T, (num_heads + 2 num_kv_heads) * head_dim] float32 (q, then k, then v per row). bias
// (optional): [(num_heads + 2 num_kv_heads) * head_dim], the q, k and v biases laid out as one row.
// q_norm / k_norm: [head_dim] each, or both null (no q/k norm).
// q_out: [T, num_heads * head_dim]; k_cache / v_cache: [max_seq, num_kv_heads * head_dim], rows
// pos0..pos0+T-1 written. inv_freq: [head_dim / 2] on the device.
// Two kernels give the same bits: one block per token with the row in shared memory (taken where
// head_dim % 4 == 0, the row fits 48 KiB and the buffers are 16-byte aligned), else one warp per
// head as the decode attention rotates (norm_rope_head); per_head forces the latter, for the tests
// that hold the two to the same bits.
void qk_norm_rope_kv(const float* qkv, int64_t T, const int32_t* d_pos0, const QkvShape& s, const float* bias,
                     const float* q_norm, const float* k_norm, float eps, const float* inv_freq, float* q_out,
                     float* k_cache, float* v_cache, cudaStream_t st, bool per_head = false);

// The same for the flash prefill (bf16 mode): q written as bf16 into q_bf16 ([T, num_heads *
// head_dim]), and besides the float32 cache rows (still written: decode reads them) their bf16
// copies into k_bf16 / v_bf16 ([>= pos0 + T, num_kv_heads * head_dim], rows pos0..pos0+T-1), the
// flash kernel's K/V operands. Every value is the float32 one above rounded to nearest: the flash
// kernel sees the bits it saw when it rounded q itself and K/V came from convert().
void qk_norm_rope_kv_bf16(const float* qkv, int64_t T, const int32_t* d_pos0, const QkvShape& s, const float* bias,
                          const float* q_norm, const float* k_norm, float eps, const float* inv_freq, void* q_bf16,
                          float* k_cache, float* v_cache, void* k_bf16, void* v_bf16, cudaStream_t st,
                          bool per_head = false);

}  // namespace segpipe::cuda
