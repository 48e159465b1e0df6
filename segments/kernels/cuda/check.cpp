#include "segments/kernels/cuda/check.h"

#include <string>

namespace segpipe::cuda {

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

void throw_cuda_error(const char* call, cudaError_t e, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so that later calls report their own
  throw RuntimeFailure(std::string("CUDA error at ") + file + ":" + std::to_string(line) + ": " + call + " failed: " +
                       cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

void throw_cublas_error(const char* call, cublasStatus_t s, const char* file, int line) {
  throw RuntimeFailure(std::string("cuBLAS error at ") + file + ":" + std::to_string(line) + ": " + call + " failed: " +
                       cublas_status_name(s));
}

}  // namespace segpipe::cuda
