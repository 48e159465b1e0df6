// MoE routing (segments/kernels/cpu/router.h): softmax of the raw router logits in float32, the
// top-k probabilities in descending order (ties to the lower expert id), optionally renormalized.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segments/core/dtype.h"
#include "segments/kernels/cuda/device_caps.h"

namespace segpipe::cuda {

// logits: [T, E] float32 (E <= 512, k <= min(E, 32)); experts/weights: [T, k].
void route_topk(const float* logits, int64_t T, int E, int k, bool renormalize, int32_t* experts, float* weights,
                cudaStream_t s);

// Decode (one token), fused: h_out (optional, [H] in wt) = rmsnorm(x) rounded to wt; logits [E] =
// W_router · h_out (float32); then softmax and top-k as route_topk. counter: a device unsigned that
// is 0 before the call (and is 0 again after it); one per stream.
// prefetch (optional): prefetch_bytes of later kernels' weights asked into L2 once the kernel is past
// its wait (the memory idles while the router and the routing run); only where path.l2_prefetch. The
// routing stays in this kernel's last block: routing in every expert block instead (router logits
// only, the expert kernels routing for themselves) cost more in the experts than it saved in the
// router (docs/benchmarks-cuda.md); that alternative was removed on 2026-12-07 (third session).
void router_fused(const float* x, const float* norm_w, float eps, const void* w_router, DType wt, int E, int64_t H,
                  float* logits, void* h_out, int k, bool renormalize, int32_t* experts, float* weights,
                  unsigned* counter, const KernelPath& path, cudaStream_t s, const void* prefetch = nullptr,
                  uint64_t prefetch_bytes = 0);

}  // namespace segpipe::cuda
