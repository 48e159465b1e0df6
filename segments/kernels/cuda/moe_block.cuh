// The whole MLP block of an MoE layer for one decode token in ONE kernel: RMSNorm of the residual row,
// router product, softmax / top-k, the chosen experts' gate/up and down projections, and the
// weighted sum added to the residual. It computes exactly what router_fused + moe_gate_up_gemv +
// moe_down_combine compute, bit for bit (logits, h, experts, weights, act and x): the same row
// products (row_dot_pre, warp_sum), the same routing code (route_warp), the same SwiGLU and the same
// sum over the slots in ascending expert id. What changes is where the waits are: one kernel instead
// of three, so no kernel boundary between the router and the experts nor between gate/up and down;
// the blocks wait on device counters instead (see moe_block.cu).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segments/core/dtype.h"

namespace segpipe::cuda {

// Where moe_decode_block applies: k <= 8, E <= 512, H and I multiples of 8, H <= 12288, F32 or BF16.
bool moe_block_fits(int E, int k, int64_t H, int64_t I, DType dt);

// x [H] float32: read (the residual row) and updated in place (x += the experts' weighted sum).
// norm_w [H]: the post-attention RMSNorm weight; w_router [E, H]; w_gate_up [E, 2I, H] (gate rows,
// then up rows) and w_down [E, H, I] for every expert of the layer, in dt. Outputs: logits [E]
// float32, h_out [H] in dt (the normalized row), experts / weights [k], act [k, I] in dt.
// counters: 3 unsigned on the device, zero before the first launch and left zero by each launch (one
// set per stream). prefetch (optional): prefetch_bytes of the next kernel's weights asked into L2
// while the router runs. Needs one resident block of 512
// threads and about 200 KB of shared memory on every multiprocessor; false (nothing launched) where
// the device does not give that.
bool moe_decode_block(float* x, const float* norm_w, float eps, const void* w_router, int E, bool renormalize, int k,
                      float* logits, void* h_out, int32_t* experts, float* weights, const void* w_gate_up,
                      const void* w_down, DType dt, int64_t I, int64_t H, void* act, unsigned* counters,
                      cudaStream_t s, const void* prefetch = nullptr, uint64_t prefetch_bytes = 0);

// Decode MoE layers use moe_decode_block where it fits (true) or router_fused + the two expert
// kernels (false, default: on an H200 the decode graph was 3.26-3.38 ms/token with the one kernel,
// 3.03-3.05 without). Process-wide; graphs must be re-captured after a change.
void set_decode_moe_block(bool on);
bool decode_moe_block();
// Benchmarks: thread 0 of every block writes (globaltimer ns, clock64) at each of its phase points
// into device_buffer[(block * kMoeBlockTracePoints + point) * 2 + {0, 1}] (nullptr: off, the default).
// Points: 0 entry, 1 past pdl_wait, 2 x normalized, 3 router done, 4 routing ready, 5 routed,
// 6 gate/up done, 7 every block's gate/up done, 8 down done, 9 combined.
constexpr int kMoeBlockTracePoints = 10;
void set_moe_block_trace(unsigned long long* device_buffer);

}  // namespace segpipe::cuda
