#include <algorithm>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/gemv.cuh"
#include "segments/kernels/cuda/gemv_common.cuh"

namespace segpipe::cuda {

namespace {

template <typename W, typename X, bool kNorm>
__global__ void __launch_bounds__(kGemvThreads) gemv_kernel(const X* __restrict__ x, const float* __restrict__ nw,
                                                            float eps, const W* __restrict__ w, int64_t rows,
                                                            int64_t cols, float* __restrict__ y, bool acc,
                                                            W* __restrict__ h_out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if constexpr (kNorm) {
    extern __shared__ float xs[];
    stage_rmsnorm<W>(reinterpret_cast<const float*>(x), nw, eps, cols, xs, blockIdx.x == 0 ? h_out : nullptr);
    __syncthreads();
    for (int64_t r = int64_t(blockIdx.x) * kGemvWarps + warp; r < rows; r += int64_t(gridDim.x) * kGemvWarps) {
      float a = warp_sum(row_dot(w + r * cols, xs, cols, lane));
      if (lane == 0) y[r] = acc ? y[r] + a : a;
    }
  } else {
    for (int64_t r = int64_t(blockIdx.x) * kGemvWarps + warp; r < rows; r += int64_t(gridDim.x) * kGemvWarps) {
      float a = warp_sum(row_dot_mem(w + r * cols, x, cols, lane));
      if (lane == 0) y[r] = acc ? y[r] + a : a;
    }
  }
}

template <typename W, typename X, bool kNorm>
void launch(const X* x, const float* nw, float eps, const W* w, int64_t rows, int64_t cols, float* y, bool acc,
            W* h_out, cudaStream_t s) {
  SEGPIPE_ASSERT_MSG(cols % 8 == 0, "gemv: the row length must be a multiple of 8");
  SEGPIPE_ASSERT_MSG(kNorm || reinterpret_cast<uintptr_t>(x) % 16 == 0, "gemv: x must be 16-byte aligned");
  if (rows == 0) return;
  const size_t smem = kNorm ? size_t(cols) * sizeof(float) : 0;
  static bool raised = false;  // one attribute call per instantiation (row lengths above 12k floats)
  if (smem > 48 * 1024 && !raised) {
    SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(gemv_kernel<W, X, kNorm>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            160 * 1024));
    raised = true;
  }
  gemv_kernel<W, X, kNorm><<<gemv_grid(rows), kGemvThreads, smem, s>>>(x, nw, eps, w, rows, cols, y, acc, h_out);
  SEGPIPE_CUDA_LAUNCH_CHECK("gemv_kernel");
}

}  // namespace

unsigned gemv_grid(int64_t rows) {
  static int sms = 0;
  if (sms == 0) {
    int dev = 0;
    SEGPIPE_CUDA_CHECK(cudaGetDevice(&dev));
    SEGPIPE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  }
  const int64_t want = (rows + kGemvWarps - 1) / kGemvWarps;
  return static_cast<unsigned>(std::min<int64_t>(want, int64_t(sms) * 8));
}

void gemv(const void* x, DType xt, const void* w, DType wt, int64_t rows, int64_t cols, float* y, bool accumulate,
          cudaStream_t s) {
  SEGPIPE_ASSERT_MSG(xt == DType::F32 || xt == wt, "gemv: x is float32 or in the weights' dtype");
  SEGPIPE_DISPATCH_FB(wt, W, {
    if (xt == DType::F32)
      launch<W, float, false>(static_cast<const float*>(x), nullptr, 0.f, static_cast<const W*>(w), rows, cols, y,
                              accumulate, nullptr, s);
    else
      launch<W, W, false>(static_cast<const W*>(x), nullptr, 0.f, static_cast<const W*>(w), rows, cols, y, accumulate,
                          nullptr, s);
  });
}

void gemv_rmsnorm(const float* xf, const float* norm_w, float eps, const void* w, DType wt, int64_t rows, int64_t cols,
                  float* y, bool accumulate, void* h_out, cudaStream_t s) {
  SEGPIPE_DISPATCH_FB(wt, W,
                      launch<W, float, true>(xf, norm_w, eps, static_cast<const W*>(w), rows, cols, y, accumulate,
                                             static_cast<W*>(h_out), s));
}

}  // namespace segpipe::cuda
