// Causal grouped-query attention over the KV cache (segments/kernels/cpu/attention.h): the query of
// token t sits at position pos0 + t and attends to cache rows 0..pos0+t. Prefill and cached decode
// are the same kernel; pos0 is read from device memory (CUDA-graph replay at any position).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segments/core/dtype.h"
#include "segments/kernels/cuda/device_caps.h"

namespace segpipe::cuda {

struct AttnShape {
  int num_heads;
  int num_kv_heads;
  int head_dim;  // at most 256
};

// q: [T, num_heads*head_dim] float32 (normed, rotated); k_cache/v_cache: [max_seq, kv_dim] float32;
// out: [T, num_heads*head_dim] in ot (F32 or BF16). scale: head_dim^-0.5 as the CPU computes it.
void attention(const float* q, int64_t T, const int32_t* d_pos0, const AttnShape& s, const float* k_cache,
               const float* v_cache, float scale, void* out, DType ot, cudaStream_t st);

// Decode (T = 1) with the keys split over several blocks per head (flash-decoding): the same
// function as attention() for one token, a different summation order. scratch:
// attention_decode_scratch_floats(s) floats; counters: num_heads unsigneds, zero before the first
// call (each call leaves them zero).
size_t attention_decode_scratch_floats(const AttnShape& s);
// The decode attention splits the keys over ceil((pos + 1) / 256) blocks per head, at most 8, chosen
// in the kernel from the device-side position (so one captured graph serves every position); one
// split writes the output directly (no partials, counter or merge). Outputs are deterministic for a
// given position; different split counts sum in different groupings. It reads the position before it
// waits for its inputs and asks L1 for each warp's first batch of cache rows then (rows of earlier
// steps): two memory round trips out of its dependent chain. This requires that d_pos0 is written
// before the step's first kernel (a copy, or a kernel at least two launches earlier, as
// greedy_next_token of the step before), never by the kernel it waits for. Launched with
// programmatic dependent launch where path.pdl.
void attention_decode(const float* q, const int32_t* d_pos0, const AttnShape& s, const float* k_cache,
                      const float* v_cache, float scale, void* out, DType ot, float* scratch, unsigned* counters,
                      const KernelPath& path, cudaStream_t st);

// The same with the q/k/v bias + q/k-norm + RoPE + KV-cache write folded in (qk_norm_rope_kv for one
// token, then attention_decode: the same bits): qkv is the step's raw [q | k | v] row (float32); bias,
// q_norm and k_norm as qk_norm_rope_kv takes them (null bias: none; null norms: no q/k norm); K and V
// rows of position pos0 are written. prefetch (optional): prefetch_bytes of weights (the o_proj matrix)
// asked into L2 while the kernel runs, where path.l2_prefetch.
void attention_decode_rope(const float* qkv, const int32_t* d_pos0, const AttnShape& s, const float* bias,
                           const float* q_norm, const float* k_norm, float eps, const float* inv_freq, float* k_cache,
                           float* v_cache, float scale, void* out, DType ot, float* scratch, unsigned* counters,
                           const void* prefetch, uint64_t prefetch_bytes, const KernelPath& path, cudaStream_t st);

// Long prefills through cuBLAS: per KV group, S = scale Q K^T for its query heads (one strided-batched
// product), a causal softmax in place, then O = P V. tf32: the products on tensor cores (bfloat16
// mode); otherwise full float32. scores: scratch of num_heads * T * (pos0 + T) floats; out_f32:
// scratch of T * num_heads * head_dim floats, used when ot is BF16. pos0 is a host value here.
void attention_gemm(cublasHandle_t h, const float* q, int64_t T, int64_t pos0, const AttnShape& s,
                    const float* k_cache, const float* v_cache, float scale, bool tf32, float* scores, float* out_f32,
                    void* out, DType ot, cudaStream_t st);

// Long prefills, fused (flash attention): bf16 tensor-core products with fp32 accumulation and an
// online fp32 softmax, no score matrix. k_bf16 / v_bf16: bf16 copies of the cache rows 0..pos0+T-1
// ([pos0 + T, num_kv_heads * head_dim]); q float32 as in attention(); out in ot (F32 or BF16).
// head_dim 64 or 128 (attention_flash_supported). Two kernels: the wgmma kernel
// (sm90a/attention_flash_wgmma.cuh) where path.wgmma and head_dim is 128, the mma.sync kernel
// elsewhere: the same function, other bits (a different summation grouping).
bool attention_flash_supported(const AttnShape& s);
void attention_flash(const float* q, int64_t T, int64_t pos0, const AttnShape& s, const void* k_bf16,
                     const void* v_bf16, float scale, void* out, DType ot, const KernelPath& path, cudaStream_t st);
// q in qt: F32 (rounded to bf16 in the kernel) or BF16 (qk_norm_rope_kv_bf16's q, already rounded the
// same way: the same result, half the bytes read).
void attention_flash(const void* q, DType qt, int64_t T, int64_t pos0, const AttnShape& s, const void* k_bf16,
                     const void* v_bf16, float scale, void* out, DType ot, const KernelPath& path, cudaStream_t st);

}  // namespace segpipe::cuda
