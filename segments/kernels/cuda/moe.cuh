// The routed-expert computation of an MoE layer (segments/kinds/experts.h on the CPU), in slots:
// slot s = t*k + j is token t's j-th choice; a bank owning experts [e0, e1] fills the slots of its
// experts with weights[s] * down(silu(gate(x_t)) * up(x_t)) and leaves the others untouched; the
// layer then adds each token's k slots to the residual in ascending expert id (the reference's
// index_add_ order).
//
// Two paths: decode (few slots) runs GEMVs that read only the chosen experts' rows; prefill groups
// the slots by expert (gather, one GEMM per expert through cuBLAS, SwiGLU, GEMM, weighted scatter).
// Expert weights of a bank are stored per layer as gate_up [n, 2I, H] (gate rows, then up rows) and
// down [n, H, I], in the compute dtype.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segments/core/dtype.h"
#include "segments/kernels/cuda/device_caps.h"

namespace segpipe::cuda {

// Decode path. x: [S / k, H] in dt; act: [S, I] in dt (scratch, consumed by moe_down_gemv).
// For one token (S == k) the kernel stages the expert ids and the token's row in shared memory right
// after the wait (one round trip for both, before any weight load) instead of reading them per item:
// the same bits, faster (docs/benchmarks-cuda.md; the unstaged one-token path was a switch until
// 2026-12-07, third session). Launched with programmatic dependent launch where path.pdl.
void moe_gate_up_gemv(const void* x, int64_t S, int k, const int32_t* experts, int e0, int e1, const void* w_gate_up,
                      DType dt, int64_t I, int64_t H, void* act, const KernelPath& path, cudaStream_t s);
// slots: [S, H] float32; rows of slots whose expert is outside [e0, e1] are not written.
void moe_down_gemv(const void* act, int64_t S, const int32_t* experts, const float* weights, int e0, int e1,
                   const void* w_down, DType dt, int64_t I, int64_t H, float* slots, cudaStream_t s);

// Decode, one token whose k experts are all in this bank (experts numbered from 0, i.e. a bank of
// every expert): x[:] += the k weighted down products added in ascending expert id, in one kernel
// (moe_down_gemv + moe_combine_add bit for bit). act: [k, I] from moe_gate_up_gemv.
bool moe_down_combine_fits(int k);
void moe_down_combine(const void* act, int k, const int32_t* experts, const float* weights, const void* w_down,
                      DType dt, int64_t I, int64_t H, float* x, const KernelPath& path, cudaStream_t s);

// Prefill path. xg[r, :] = x[perm[r] / k, :] for r < n (perm: slot ids grouped by expert).
void moe_gather_rows(const void* x, DType dt, const int32_t* perm, int64_t n, int k, int64_t H, void* xg,
                     cudaStream_t s);
// slots[perm[r], :] = weights[perm[r]] * d[r, :]; d in dt (F32 or BF16), slots in slot_dt (F32 or
// BF16: the product rounded once).
void moe_scatter_weighted(const void* d, DType dt, const int32_t* perm, const float* weights, int64_t n, int64_t H,
                          void* slots, DType slot_dt, cudaStream_t s);

// The dtype of a request's slots: bfloat16 for a grouped (prefill) request in bfloat16 compute
// (the slots are the largest tensor of a prefill layer: [T * k, H], written by the experts and
// read by the combine; bf16 halves both), float32 otherwise (decode; float32 verification runs).
// Every bank of a layer and the layer's combine use this one rule, so that a segmented run
// equals the monolithic one bit for bit.
inline DType moe_slot_dtype(DType compute, bool grouped) {
  return compute == DType::BF16 && grouped ? DType::BF16 : DType::F32;
}

// A layer's shared expert (Qwen2-MoE: ModelConfig::shared_expert_intermediate > 0), as the combine
// adds it: out [T, H] float32, SwiGLU_shared(x) of each token; gate [T] float32, the logit x . w_g of
// its sigmoid gate. Null out: the layer has none.
struct SharedExpertOut {
  const float* out = nullptr;
  const float* gate = nullptr;
};

// x[t, :] += (0 + slot_a + slot_b + ...) over token t's k slots in ascending expert id, in fp32;
// slots in slot_dt (F32, or BF16 with H a multiple of 8). With a shared expert, x[t, :] += (that sum
// + sigmoid(gate[t]) * out[t, :]): the routed sum first, then the gated shared output, then the
// residual add, each rounded once, as the CPU layer (segments/kinds/layers.cpp) and the reference.
void moe_combine_add(const void* slots, DType slot_dt, const int32_t* experts, int64_t T, int k, int64_t H, float* x,
                     cudaStream_t s, const SharedExpertOut& shared = {});

}  // namespace segpipe::cuda
