// MoE routing (segments/kernels/cpu/router.h): softmax of the raw router logits in float32, the
// top-k probabilities in descending order (ties to the lower expert id), optionally renormalized.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segments/core/dtype.h"

namespace segpipe::cuda {

// logits: [T, E] float32 (E <= 512, k <= min(E, 32)); experts/weights: [T, k].
void route_topk(const float* logits, int64_t T, int E, int k, bool renormalize, int32_t* experts, float* weights,
                cudaStream_t s);

// Decode (one token), fused: h_out (optional, [H] in wt) = rmsnorm(x) rounded to wt; logits [E] =
// W_router · h_out (float32); then softmax and top-k as route_topk. counter: a device unsigned that
// is 0 before the call (and is 0 again after it); one per stream.
// prefetch (optional): prefetch_bytes of later kernels' weights asked into L2 once the kernel is past
// its wait (the memory idles while the router and the routing run).
void router_fused(const float* x, const float* norm_w, float eps, const void* w_router, DType wt, int E, int64_t H,
                  float* logits, void* h_out, int k, bool renormalize, int32_t* experts, float* weights,
                  unsigned* counter, cudaStream_t s, const void* prefetch = nullptr, uint64_t prefetch_bytes = 0);

// Decode without the routing tail: h_out and logits as router_fused, no softmax / top-k, no counter.
// The decode expert kernels then route from the logits themselves (moe_gate_up_gemv and
// moe_down_combine with `logits`): every block runs the same routing code (route_topk's bits), so no
// block waits for a last-block pass and its fence.
void router_logits(const float* x, const float* norm_w, float eps, const void* w_router, DType wt, int E, int64_t H,
                   float* logits, void* h_out, cudaStream_t s);

// Decode layers use router_logits + expert kernels that route for themselves (true) rather than
// router_fused's last-block routing (false, default: measured on an H200, routing in every expert
// block cost 0.24 ms/token in the experts for 0.16 saved in the router). Process-wide; graphs must
// be re-captured after a change.
void set_decode_route_in_experts(bool on);
bool decode_route_in_experts();

}  // namespace segpipe::cuda
