#include <algorithm>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/gemv.cuh"
#include "segments/kernels/cuda/gemv_common.cuh"
#include "segments/kernels/cuda/launch.cuh"

namespace segpipe::cuda {

namespace {

// One warp per row, rows spread over the grid (grid-stride); at most 128 registers (2 blocks per
// multiprocessor, as before the double buffer). The first row's weight chunks are loaded
// into registers before pdl_wait(): they stream in while the previous kernel finishes and while the
// block computes the RMSNorm prologue.
template <typename W, typename X, bool kNorm>
__global__ void __launch_bounds__(kGemvThreads, 2) gemv_kernel(const X* __restrict__ x, const float* __restrict__ nw,
                                                            float eps, const W* __restrict__ w, int64_t rows,
                                                            int64_t cols, float* __restrict__ y, bool acc,
                                                            W* __restrict__ h_out) {
  extern __shared__ float xs[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t stride = int64_t(gridDim.x) * kGemvWarps;
  int64_t r = int64_t(blockIdx.x) * kGemvWarps + warp;
  // Two register buffers, used alternately: the next row's first chunks are issued before the
  // current row is reduced (a warp walking several rows keeps its loads in flight). Each row's own
  // arithmetic is row_dot_pre's, whichever buffer holds it.
  Chunk8<W> pa[kPrefetchChunks<W>], pb[kPrefetchChunks<W>];
  if (r < rows) row_prefetch(w + r * cols, cols, lane, pa);
  if constexpr (kNorm) prefetch_l1_block(nw, uint64_t(cols) * sizeof(float));
  pdl_wait();
  pdl_trigger();
  if constexpr (kNorm) {
    stage_rmsnorm<W>(reinterpret_cast<const float*>(x), nw, eps, cols, xs, blockIdx.x == 0 ? h_out : nullptr);
    __syncthreads();
  }
  const X* xsrc = kNorm ? reinterpret_cast<const X*>(static_cast<const float*>(xs)) : x;  // X is float with kNorm
  while (r < rows) {
    if (r + stride < rows) row_prefetch(w + (r + stride) * cols, cols, lane, pb);
    float a = warp_sum(row_dot_pre(w + r * cols, xsrc, cols, lane, pa));
    if (lane == 0) y[r] = acc ? y[r] + a : a;
    r += stride;
    if (r >= rows) break;
    if (r + stride < rows) row_prefetch(w + (r + stride) * cols, cols, lane, pa);
    a = warp_sum(row_dot_pre(w + r * cols, xsrc, cols, lane, pb));
    if (lane == 0) y[r] = acc ? y[r] + a : a;
    r += stride;
  }
}

template <typename W, typename X, bool kNorm>
void launch(const X* x, const float* nw, float eps, const W* w, int64_t rows, int64_t cols, float* y, bool acc,
            W* h_out, const KernelPath& path, cudaStream_t s) {
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
  const unsigned grid =
      resident_grid(gemv_kernel<W, X, kNorm>, kGemvThreads, smem, (rows + kGemvWarps - 1) / kGemvWarps);
  SEGPIPE_CUDA_CHECK(launch_pdl(path.pdl, gemv_kernel<W, X, kNorm>, dim3(grid), dim3(kGemvThreads), smem, s, x, nw,
                                eps, w, rows, cols, y, acc, h_out));
  SEGPIPE_CUDA_LAUNCH_CHECK("gemv_kernel");
}

}  // namespace

int sm_count() {
  static const int sms = [] {
    int dev = 0, n = 0;
    SEGPIPE_CUDA_CHECK(cudaGetDevice(&dev));
    SEGPIPE_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }();
  return sms;
}

unsigned gemv_grid(int64_t rows) {
  const int64_t want = (rows + kGemvWarps - 1) / kGemvWarps;
  return static_cast<unsigned>(std::min<int64_t>(want, int64_t(sm_count()) * 8));
}

void gemv(const void* x, DType xt, const void* w, DType wt, int64_t rows, int64_t cols, float* y, bool accumulate,
          const KernelPath& path, cudaStream_t s) {
  SEGPIPE_ASSERT_MSG(xt == DType::F32 || xt == wt, "gemv: x is float32 or in the weights' dtype");
  SEGPIPE_DISPATCH_FB(wt, W, {
    if (xt == DType::F32)
      launch<W, float, false>(static_cast<const float*>(x), nullptr, 0.f, static_cast<const W*>(w), rows, cols, y,
                              accumulate, nullptr, path, s);
    else
      launch<W, W, false>(static_cast<const W*>(x), nullptr, 0.f, static_cast<const W*>(w), rows, cols, y, accumulate,
                          nullptr, path, s);
  });
}

void gemv_rmsnorm(const float* xf, const float* norm_w, float eps, const void* w, DType wt, int64_t rows, int64_t cols,
                  float* y, bool accumulate, void* h_out, const KernelPath& path, cudaStream_t s) {
  SEGPIPE_DISPATCH_FB(wt, W,
                      launch<W, float, true>(xf, norm_w, eps, static_cast<const W*>(w), rows, cols, y, accumulate,
                                             static_cast<W*>(h_out), path, s));
}

}  // namespace segpipe::cuda
