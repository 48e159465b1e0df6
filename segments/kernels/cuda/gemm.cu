#include <atomic>
#include <cstdio>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/gemm.cuh"

namespace segpipe::cuda {

namespace {

cudaDataType_t cuda_type(DType dt) {
  SEGPIPE_ASSERT_MSG(dt == DType::F32 || dt == DType::BF16, "gemm: F32 or BF16 operands");
  return dt == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
}

// F32 operands: CUBLAS_COMPUTE_32F_PEDANTIC keeps every product in full float32 (no TF32, no
// reduced-precision splitting), whatever the handle's math mode. (The grouped call takes plain
// CUBLAS_COMPUTE_32F, also full float32 under the handle's default math mode.)
cublasComputeType_t compute_type(DType dt) {
  return dt == DType::F32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
}

std::atomic<bool> g_grouped_unsupported{false};

}  // namespace

void gemm_xwT(cublasHandle_t h, const void* x, const void* w, DType dt, int64_t T, int64_t rows, int64_t cols,
              void* y, int64_t ldy, float beta, DType yt) {
  if (T == 0 || rows == 0) return;
  const float alpha = 1.0f;
  // Row-major y[T, rows] is column-major y^T [rows, T] = W (col-major [cols, rows], transposed) · x^T.
  SEGPIPE_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), static_cast<int>(T),
                                    static_cast<int>(cols), &alpha, w, cuda_type(dt), static_cast<int>(cols), x,
                                    cuda_type(dt), static_cast<int>(cols), &beta, y, cuda_type(yt),
                                    static_cast<int>(ldy), compute_type(dt), CUBLAS_GEMM_DEFAULT));
}

void gemm_xwT_many(cublasHandle_t h, const std::vector<GemmProblem>& ps, DType dt, int64_t rows, int64_t cols,
                   void** d_ptrs, bool grouped, cudaStream_t s) {
  if (ps.empty()) return;
  if (grouped && !g_grouped_unsupported.load()) {
    const int n = static_cast<int>(ps.size());
    std::vector<const void*> ptrs(static_cast<size_t>(3 * n));
    for (int i = 0; i < n; i++) {
      ptrs[static_cast<size_t>(i)] = ps[static_cast<size_t>(i)].w;
      ptrs[static_cast<size_t>(n + i)] = ps[static_cast<size_t>(i)].x;
      ptrs[static_cast<size_t>(2 * n + i)] = ps[static_cast<size_t>(i)].y;
    }
    // Pageable source: the copy has read it when the call returns.
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(d_ptrs, ptrs.data(), ptrs.size() * sizeof(void*), cudaMemcpyHostToDevice, s));
    std::vector<cublasOperation_t> ta(static_cast<size_t>(n), CUBLAS_OP_T), tb(static_cast<size_t>(n), CUBLAS_OP_N);
    std::vector<int> m(static_cast<size_t>(n), static_cast<int>(rows)), nn(static_cast<size_t>(n)),
        k(static_cast<size_t>(n), static_cast<int>(cols)), lda(static_cast<size_t>(n), static_cast<int>(cols)),
        ldc(static_cast<size_t>(n), static_cast<int>(rows)), gs(static_cast<size_t>(n), 1);
    std::vector<float> alpha(static_cast<size_t>(n), 1.0f), beta(static_cast<size_t>(n), 0.0f);
    for (int i = 0; i < n; i++) nn[static_cast<size_t>(i)] = static_cast<int>(ps[static_cast<size_t>(i)].T);
    cublasStatus_t st = cublasGemmGroupedBatchedEx(
        h, ta.data(), tb.data(), m.data(), nn.data(), k.data(), alpha.data(), const_cast<const void* const*>(d_ptrs),
        cuda_type(dt), lda.data(), const_cast<const void* const*>(d_ptrs + n), cuda_type(dt), lda.data(), beta.data(),
        d_ptrs + 2 * n, cuda_type(dt), ldc.data(), n, gs.data(), CUBLAS_COMPUTE_32F);
    if (st == CUBLAS_STATUS_SUCCESS) return;
    if (st != CUBLAS_STATUS_NOT_SUPPORTED && st != CUBLAS_STATUS_INVALID_VALUE)
      SEGPIPE_CUBLAS_CHECK(st);
    if (!g_grouped_unsupported.exchange(true))
      std::fprintf(stderr, "segpipe: cublasGemmGroupedBatchedEx returned %s for %s operands; using one GEMM per expert\n",
                   cublas_status_name(st), dtype_name(dt));
  }
  for (const GemmProblem& p : ps) gemm_xwT(h, p.x, p.w, dt, p.T, rows, cols, p.y, rows, 0.0f, dt);
}

}  // namespace segpipe::cuda
