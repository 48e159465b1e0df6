// Device helpers shared by the kernels (included only from .cu files): element conversion, warp
// reductions, 16-byte vector loads.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "segments/core/dtype.h"
#include "segments/core/errors.h"
#include "segments/kernels/cuda/l2_request.h"

namespace segpipe::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 from_f<bf16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Online softmax of the flash kernels (exp2 units), per accumulator row. The tile's row maximum over
// the 4 lanes of an mma/wgmma quad (lanes differing in bits 0-1):
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
// the new running maximum, the exp2 base (0 while a row has seen only masked keys, so no inf - inf)
// and the factor for the sums so far.
struct OnlineMax {
  float m, base, scale;
};
__device__ __forceinline__ OnlineMax online_max(float m_old, float tile_max) {
  const float mn = fmaxf(m_old, tile_max), b = mn == -INFINITY ? 0.f : mn;
  return {mn, b, exp2f(m_old - b)};
}

// 8 bf16 values (one 16-byte load) as float, in order.
__device__ __forceinline__ void bf16x8_to_float(const uint4& u, float (&v)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 f = __bfloat1622float2(h[i]);
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}

// 8 consecutive elements as float; p must be 16-byte aligned.
__device__ __forceinline__ void load8(const float* p, float (&v)[8]) {
  float4 a = __ldg(reinterpret_cast<const float4*>(p));
  float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
  v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}
__device__ __forceinline__ void load8(const bf16* p, float (&v)[8]) {
  bf16x8_to_float(__ldg(reinterpret_cast<const uint4*>(p)), v);
}
// Past L1 (L2 only): data that other blocks of the running kernel wrote.
__device__ __forceinline__ void load8_cg(const float* p, float (&v)[8]) {
  float4 a = __ldcg(reinterpret_cast<const float4*>(p));
  float4 b = __ldcg(reinterpret_cast<const float4*>(p) + 1);
  v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
  v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}
__device__ __forceinline__ void load8_cg(const bf16* p, float (&v)[8]) {
  bf16x8_to_float(__ldcg(reinterpret_cast<const uint4*>(p)), v);
}
// Streaming variant for weights read once per step: do not keep them in L1.
__device__ __forceinline__ void load8_stream(const float* p, float (&v)[8]) {
  float4 a = __ldcs(reinterpret_cast<const float4*>(p));
  float4 b = __ldcs(reinterpret_cast<const float4*>(p) + 1);
  v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
  v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}
__device__ __forceinline__ void load8_stream(const bf16* p, float (&v)[8]) {
  bf16x8_to_float(__ldcs(reinterpret_cast<const uint4*>(p)), v);
}

// Threads one SM holds on the architecture being compiled: 2048 on sm_80, 90 and 100; 1536 on
// sm_86, 87, 89, 110 and 120-121 (RTX 30xx, Orin, RTX 40xx, Thor, RTX 50xx). A __launch_bounds__ minimum
// of blocks beyond it is ignored (ptxas warns), so min_blocks_per_sm() caps the minimum a kernel asks for
// where it was chosen on a 2048-thread SM: the same machine code there, a hint that holds elsewhere.
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 860 || __CUDA_ARCH__ == 870 || __CUDA_ARCH__ == 890 || __CUDA_ARCH__ == 1100 || __CUDA_ARCH__ >= 1200)
inline constexpr int kMaxThreadsPerSm = 1536;
#else
inline constexpr int kMaxThreadsPerSm = 2048;
#endif
constexpr int min_blocks_per_sm(int threads, int blocks) {
  return blocks * threads <= kMaxThreadsPerSm ? blocks : kMaxThreadsPerSm / threads;
}

inline unsigned div_up(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

// Programmatic dependent launch (Hopper): a kernel launched with launch_pdl() may start while the
// kernel before it on the stream still runs. It may read only what no earlier kernel writes (its
// weights) before pdl_wait(), which returns once the previous kernel has completed and its writes
// are visible. Every block of such a kernel calls pdl_wait() before it exits (so completion stays
// in stream order for the kernels after it) and pdl_trigger() once it is past the wait (the next
// kernel may then be launched early). Both are no-ops where the kernel was launched normally.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// 16-byte asynchronous copy global -> shared (cp.async, L1 bypassed); src_bytes < 16 zero-fills the
// rest. Completion in groups: cp_async_commit() closes a group, cp_async_wait<N>() waits until at
// most N groups of this thread are pending.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes = 16) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Asks the copy engine to bring [p, p + bytes) into L2 (no completion, no registers): weights that a
// later kernel reads, fetched while memory would otherwise idle. p 16-byte aligned; bytes rounded
// down to a multiple of 16; bit 63 of `bytes`: kL2KeepBit. Where the context's KernelPath has no
// l2_prefetch the host passes no range (null), which prefetch_l2_part skips.
__device__ __forceinline__ void prefetch_l2(const void* p, uint64_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const bool keep = bytes & kL2KeepBit;
  bytes &= ~kL2KeepBit;
  uint64_t policy = 0;
  if (keep) asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
  const char* c = static_cast<const char*>(p);
  while (bytes >= 16) {
    uint32_t n = bytes > (1u << 20) ? (1u << 20) : static_cast<uint32_t>(bytes & ~uint64_t(15));
    if (keep)
      asm volatile("cp.async.bulk.prefetch.L2.global.L2::cache_hint [%0], %1, %2;" ::"l"(c), "r"(n), "l"(policy)
                   : "memory");
    else
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(c), "r"(n) : "memory");
    c += n;
    bytes -= n;
  }
#else
  (void)p;
  (void)bytes;
#endif
}

// Asks this multiprocessor's L1 for [p, p + bytes), a 128-byte line per thread of the block: small
// constants (norm weights, RoPE frequencies) a decode kernel reads right after pdl_wait(), which
// otherwise come from memory then (nothing keeps them in L2 from one token to the next), one round
// trip of the kernel's dependent chain.
__device__ __forceinline__ void prefetch_l1_block(const void* p, uint64_t bytes) {
#if defined(__CUDA_ARCH__)
  const char* c = static_cast<const char*>(p);
  for (uint64_t off = uint64_t(threadIdx.x) * 128; off < bytes; off += uint64_t(blockDim.x) * 128)
    asm volatile("prefetch.global.L1 [%0];" ::"l"(c + off));
#else
  (void)p;
  (void)bytes;
#endif
}

// Part `part` of `parts` equal parts of an L2 prefetch (issued by the calling thread).
__device__ __forceinline__ void prefetch_l2_part(const void* p, uint64_t bytes, unsigned part, unsigned parts) {
  if (!p) return;
  const uint64_t keep = bytes & kL2KeepBit;
  bytes &= ~kL2KeepBit;
  const uint64_t per = ((bytes + parts - 1) / parts + 15) & ~uint64_t(15);
  const uint64_t b0 = uint64_t(part) * per;
  if (b0 >= bytes) return;
  prefetch_l2(static_cast<const char*>(p) + b0, (bytes - b0 < per ? bytes - b0 : per) | keep);
}
// This block's share of an L2 prefetch spread over the grid's blocks (one thread issues it).
__device__ __forceinline__ void prefetch_l2_share(const void* p, uint64_t bytes, unsigned block, unsigned blocks) {
  if (threadIdx.x == 0) prefetch_l2_part(p, bytes, block, blocks);
}

}  // namespace segpipe::cuda

// Dispatches on a device tensor's element type (F32 or BF16) with T bound to the C++ type.
#define SEGPIPE_DISPATCH_FB(dtype, T, ...)                                              \
  do {                                                                                  \
    if ((dtype) == ::segpipe::DType::F32) {                                             \
      using T = float;                                                                  \
      __VA_ARGS__;                                                                      \
    } else if ((dtype) == ::segpipe::DType::BF16) {                                     \
      using T = ::segpipe::cuda::bf16;                                                  \
      __VA_ARGS__;                                                                      \
    } else {                                                                            \
      SEGPIPE_ASSERT_MSG(false, "CUDA kernels take F32 or BF16 tensors");               \
    }                                                                                   \
  } while (0)
