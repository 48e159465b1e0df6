#include "segments/cuda/device.h"

#include <atomic>
#include <cstdlib>

#include "segments/core/segment_types.h"

namespace segpipe::cuda {

namespace {
constexpr size_t kCublasWorkspace = 32u << 20;
std::atomic<uint64_t> g_buffer_epoch{0};
}  // namespace

cudaGraphExec_t capture_graph(cudaStream_t st, const std::function<void()>& body) {
  cudaGraph_t g = nullptr;
  SEGPIPE_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  try {
    body();
  } catch (...) {
    cudaStreamEndCapture(st, &g);
    if (g) cudaGraphDestroy(g);
    throw;
  }
  SEGPIPE_CUDA_CHECK(cudaStreamEndCapture(st, &g));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  SEGPIPE_CUDA_CHECK(e);
  return exec;
}

uint64_t buffer_epoch() { return g_buffer_epoch.load(std::memory_order_relaxed); }
void bump_buffer_epoch() { g_buffer_epoch.fetch_add(1, std::memory_order_relaxed); }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

void require_device(int index) {
  const int n = device_count();
  if (index < 0 || index >= n)
    throw InputError("device cuda:" + std::to_string(index) + " does not exist: this machine has " + std::to_string(n) +
                     " CUDA device" + (n == 1 ? "" : "s"));
}

std::string device_name(int device) {
  cudaDeviceProp p{};
  SEGPIPE_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  return p.name;
}

uint64_t l2_set_aside(uint64_t bytes) {
  int dev = 0;
  SEGPIPE_CUDA_CHECK(cudaGetDevice(&dev));
  int max_bytes = 0;
  SEGPIPE_CUDA_CHECK(cudaDeviceGetAttribute(&max_bytes, cudaDevAttrMaxPersistingL2CacheSize, dev));
  const uint64_t n = bytes < uint64_t(max_bytes) ? bytes : uint64_t(max_bytes);
  if (max_bytes <= 0) return 0;
  SEGPIPE_CUDA_CHECK(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, n));
  size_t got = 0;
  SEGPIPE_CUDA_CHECK(cudaDeviceGetLimit(&got, cudaLimitPersistingL2CacheSize));
  return got;
}

Context::Context(int device) : Context(device, GpuKernels::automatic) {}

Context::Context(int device, GpuKernels kernels) : device_(device) {
  SEGPIPE_CUDA_CHECK(cudaSetDevice(device));
  kernels_ = select_kernel_path(device, kernels);
  SEGPIPE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  SEGPIPE_CUBLAS_CHECK(cublasCreate(&cublas_));
  SEGPIPE_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  SEGPIPE_CUDA_CHECK(cudaMalloc(&workspace_, kCublasWorkspace));
  SEGPIPE_CUBLAS_CHECK(cublasSetWorkspace(cublas_, workspace_, kCublasWorkspace));
}

Context::~Context() {
  if (stream_) cudaStreamSynchronize(stream_);
  if (cublas_) cublasDestroy(cublas_);
  if (workspace_) cudaFree(workspace_);
  if (stream_) cudaStreamDestroy(stream_);
}

}  // namespace segpipe::cuda
