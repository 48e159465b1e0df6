// One CHECK family for the CUDA runtime and cuBLAS: a failing call becomes a segpipe::RuntimeFailure
// (exit 3) naming the call, the error and file:line. Kernel launches are checked with
// SEGPIPE_CUDA_LAUNCH_CHECK(name) right after the launch (launch errors are reported at once,
// execution errors at the next synchronizing call).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "segments/core/errors.h"

namespace segpipe::cuda {

[[noreturn]] void throw_cuda_error(const char* call, cudaError_t e, const char* file, int line);
[[noreturn]] void throw_cublas_error(const char* call, cublasStatus_t s, const char* file, int line);
const char* cublas_status_name(cublasStatus_t s);

}  // namespace segpipe::cuda

#define SEGPIPE_CUDA_CHECK(call)                                                              \
  do {                                                                                        \
    cudaError_t segpipe_e_ = (call);                                                          \
    if (segpipe_e_ != cudaSuccess) ::segpipe::cuda::throw_cuda_error(#call, segpipe_e_, __FILE__, __LINE__); \
  } while (0)

#define SEGPIPE_CUBLAS_CHECK(call)                                                            \
  do {                                                                                        \
    cublasStatus_t segpipe_s_ = (call);                                                       \
    if (segpipe_s_ != CUBLAS_STATUS_SUCCESS)                                                  \
      ::segpipe::cuda::throw_cublas_error(#call, segpipe_s_, __FILE__, __LINE__);             \
  } while (0)

#define SEGPIPE_CUDA_LAUNCH_CHECK(kernel_name)                                                \
  do {                                                                                        \
    cudaError_t segpipe_e_ = cudaGetLastError();                                              \
    if (segpipe_e_ != cudaSuccess)                                                            \
      ::segpipe::cuda::throw_cuda_error("launch of " kernel_name, segpipe_e_, __FILE__, __LINE__); \
  } while (0)
