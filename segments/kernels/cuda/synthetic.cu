#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/synthetic.cuh"

namespace segpipe::cuda {

namespace {

// Exactly segments/model/synthetic.cpp's synthetic_value: 64-bit integer arithmetic wraps the same
// way, the 24-bit draw converts exactly, and the last two float operations are rounded one at a
// time (__fmul_rn, __fadd_rn) as the CPU build (-ffp-contract=off) rounds them: no fused multiply-add.
__device__ __forceinline__ float synthetic_value_dev(uint64_t seed, uint64_t name_hash, uint64_t index, float scale,
                                                     float offset) {
  uint64_t z = seed * 0xD1B54A32D192ED03ull ^ name_hash ^ (index * 0x9E3779B97F4A7C15ull);
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  float u = __fmul_rn(static_cast<float>(z >> 40), 1.0f / 16777216.0f);
  float c = __fsub_rn(__fmul_rn(2.0f, u), 1.0f);
  return __fadd_rn(offset, __fmul_rn(c, scale));
}

template <typename O>
__global__ void synthetic_kernel(uint64_t seed, uint64_t name_hash, uint64_t first, int64_t n, float scale,
                                 float offset, int ckpt, O* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = synthetic_value_dev(seed, name_hash, first + static_cast<uint64_t>(i), scale, offset);
    if (ckpt == 1) v = __bfloat162float(__float2bfloat16_rn(v));
    else if (ckpt == 2) v = __half2float(__float2half_rn(v));
    out[i] = from_f<O>(v);
  }
}

}  // namespace

void synthetic_fill(uint64_t seed, uint64_t name_hash, uint64_t first, int64_t n, float scale, float offset,
                    DType ckpt, void* out, DType ot, cudaStream_t s) {
  if (n == 0) return;
  int ck = ckpt == DType::BF16 ? 1 : ckpt == DType::F16 ? 2 : 0;
  SEGPIPE_ASSERT_MSG(ckpt == DType::BF16 || ckpt == DType::F16 || ckpt == DType::F32, "synthetic: float dtype");
  unsigned blocks = static_cast<unsigned>(std::min<int64_t>(div_up(n, 256), 132 * 64));
  SEGPIPE_DISPATCH_FB(ot, O,
                      synthetic_kernel<O><<<blocks, 256, 0, s>>>(seed, name_hash, first, n, scale, offset, ck,
                                                                  static_cast<O*>(out)));
  SEGPIPE_CUDA_LAUNCH_CHECK("synthetic_kernel");
}

}  // namespace segpipe::cuda
