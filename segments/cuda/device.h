// The GPU a segment runs on: one stream, one cuBLAS handle (with a fixed workspace, so that cuBLAS
// calls can be captured into CUDA graphs), and owned device buffers.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/device_caps.h"

namespace segpipe::cuda {

// Number of CUDA devices; 0 when there is no driver or no GPU (never throws).
int device_count();
// Throws InputError naming cuda:N when that device does not exist on this machine.
void require_device(int index);
std::string device_name(int device);
// Sets aside up to `bytes` of the current device's L2 for persisting (evict_last) lines
// (cudaLimitPersistingL2CacheSize, clamped to what the device allows) and returns the bytes set aside;
// 0 where the device has none. Lines of other accesses use the portion while no kept line needs it.
uint64_t l2_set_aside(uint64_t bytes);

// Captures what body() launches on stream st (thread-local capture mode) into an executable graph;
// if body throws, the capture is ended and discarded and the exception passes on.
cudaGraphExec_t capture_graph(cudaStream_t st, const std::function<void()>& body);

class Context {
 public:
  // kernels: the hardware path of the kernels launched through this context, decided here once
  // (select_kernel_path) from the device and the choice; GpuKernels::automatic without it. (Two
  // constructors rather than a default argument: this header is also built as C++17 by CUDA
  // translation units, which cannot include segment_types.h.)
  explicit Context(int device);
  Context(int device, GpuKernels kernels);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  void sync() const { SEGPIPE_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  const KernelPath& kernels() const { return kernels_; }
  // Per-phase GPU time of the steps run on this context (profile.h, benchmarks): off unless set;
  // phase -> total milliseconds since the caller last cleared phase_ms().
  void set_profiling(bool on) { profiling_ = on; }
  bool profiling() const { return profiling_; }
  std::map<std::string, double>& phase_ms() { return phase_ms_; }

 private:
  int device_;
  KernelPath kernels_;
  bool profiling_ = false;
  std::map<std::string, double> phase_ms_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* workspace_ = nullptr;
};

// Counts every device reallocation of a Buffer in this process: a captured CUDA graph bakes in the
// addresses of the buffers it uses, so whoever replays one compares this count with the one at
// capture and captures again where a buffer moved (a longer prefill grew a scratch buffer).
uint64_t buffer_epoch();
void bump_buffer_epoch();

// An owned device allocation of n elements of T (uninitialized). grow() reallocates only to get
// larger, dropping the contents.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t n) { grow(n); }
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = o.p_;
      n_ = o.n_;
      o.p_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  void grow(size_t n) {
    if (n <= n_) return;
    release();
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, n * sizeof(T));
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw RuntimeFailure("cannot allocate " + std::to_string(n * sizeof(T)) + " bytes of GPU memory (" +
                           cudaGetErrorString(e) + ")");
    }
    p_ = static_cast<T*>(p);
    n_ = n;
    bump_buffer_epoch();
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }

 private:
  void release() {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace segpipe::cuda
