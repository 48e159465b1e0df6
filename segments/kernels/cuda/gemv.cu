#include <algorithm>
#include <atomic>

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
                                                            W* __restrict__ h_out, int pfm, const void* pf,
                                                            uint64_t pf_bytes) {
  extern __shared__ float xs[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t stride = int64_t(gridDim.x) * kGemvWarps;
  int64_t r = int64_t(blockIdx.x) * kGemvWarps + warp;
  if (pfm == 1) {
    prefetch_l2_share(w, uint64_t(rows * cols) * sizeof(W), blockIdx.x, gridDim.x);
  } else if (pfm == 2 && threadIdx.x == 0) {
    for (int64_t r0 = int64_t(blockIdx.x) * kGemvWarps; r0 < rows; r0 += stride)
      prefetch_l2(w + r0 * cols, uint64_t(min(int64_t(kGemvWarps), rows - r0) * cols) * sizeof(W));
  }
  // Two register buffers, used alternately: the next row's first chunks are issued before the
  // current row is reduced (a warp walking several rows keeps its loads in flight). Each row's own
  // arithmetic is row_dot_pre's, whichever buffer holds it.
  Chunk8<W> pa[kPrefetchChunks<W>], pb[kPrefetchChunks<W>];
  if (r < rows) row_prefetch(w + r * cols, cols, lane, pa);
  if constexpr (kNorm) prefetch_l1_block(nw, uint64_t(cols) * sizeof(float));
  pdl_wait();
  pdl_trigger();
  prefetch_l2_share(pf, pf_bytes, blockIdx.x, gridDim.x);  // the next kernel's weights (optional)
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
            W* h_out, cudaStream_t s, const void* pf, uint64_t pf_bytes) {
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
  // L2 prefetch of the whole matrix only where it fits well within L2 (not the vocabulary product)
  int pfm = decode_overlap() ? decode_l2_prefetch() : 0;
  if (uint64_t(rows * cols) * sizeof(W) > (uint64_t(32) << 20)) pfm = 0;
  const unsigned grid = decode_persistent() ? resident_grid(gemv_kernel<W, X, kNorm>, kGemvThreads, smem,
                                                            (rows + kGemvWarps - 1) / kGemvWarps)
                                            : gemv_grid(rows);
  SEGPIPE_CUDA_CHECK(launch_pdl(gemv_kernel<W, X, kNorm>, dim3(grid), dim3(kGemvThreads), smem, s, x, nw,
                                eps, w, rows, cols, y, acc, h_out, pfm, pf, pf_bytes));
  SEGPIPE_CUDA_LAUNCH_CHECK("gemv_kernel");
}

}  // namespace

namespace {
std::atomic<bool> g_overlap{true};
}  // namespace

std::atomic<int> g_l2pf{0};
void set_decode_overlap(bool on) { g_overlap.store(on); }
void set_decode_l2_prefetch(int mode) { g_l2pf.store(mode); }
int decode_l2_prefetch() { return g_l2pf.load(std::memory_order_relaxed); }
bool decode_overlap() { return g_overlap.load(std::memory_order_relaxed); }

namespace {
std::atomic<bool> g_persistent{true};
}  // namespace

void set_decode_persistent(bool on) { g_persistent.store(on); }
namespace {
std::atomic<int> g_blocks_per_sm{0};
}  // namespace
namespace {
std::atomic<int> g_prefetch_next{9};  // o_proj during attention, next q/k/v during the router (gemv.cuh)
}  // namespace
void set_decode_prefetch_next(int mask) { g_prefetch_next.store(mask); }
namespace {
std::atomic<bool> g_l2_keep{false};
}  // namespace
void set_decode_l2_keep(bool on) { g_l2_keep.store(on); }
bool decode_l2_keep() { return g_l2_keep.load(std::memory_order_relaxed); }
int decode_prefetch_next() { return g_prefetch_next.load(std::memory_order_relaxed); }
void set_decode_blocks_per_sm(int n) { g_blocks_per_sm.store(n < 0 ? 0 : n); }
int decode_blocks_per_sm() { return g_blocks_per_sm.load(std::memory_order_relaxed); }
bool decode_persistent() { return g_persistent.load(std::memory_order_relaxed); }

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
          cudaStream_t s, const void* prefetch, uint64_t prefetch_bytes) {
  SEGPIPE_ASSERT_MSG(xt == DType::F32 || xt == wt, "gemv: x is float32 or in the weights' dtype");
  SEGPIPE_DISPATCH_FB(wt, W, {
    if (xt == DType::F32)
      launch<W, float, false>(static_cast<const float*>(x), nullptr, 0.f, static_cast<const W*>(w), rows, cols, y,
                              accumulate, nullptr, s, prefetch, prefetch_bytes);
    else
      launch<W, W, false>(static_cast<const W*>(x), nullptr, 0.f, static_cast<const W*>(w), rows, cols, y, accumulate,
                          nullptr, s, prefetch, prefetch_bytes);
  });
}

void gemv_rmsnorm(const float* xf, const float* norm_w, float eps, const void* w, DType wt, int64_t rows, int64_t cols,
                  float* y, bool accumulate, void* h_out, cudaStream_t s, const void* prefetch,
                  uint64_t prefetch_bytes) {
  SEGPIPE_DISPATCH_FB(wt, W,
                      launch<W, float, true>(xf, norm_w, eps, static_cast<const W*>(w), rows, cols, y, accumulate,
                                             static_cast<W*>(h_out), s, prefetch, prefetch_bytes));
}

}  // namespace segpipe::cuda
