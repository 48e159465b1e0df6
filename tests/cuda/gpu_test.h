// A small harness for the GPU tests (no GoogleTest: they must build on GPU machines that lack it).
// The verdicts (gpu_checks.h): a test exits 77 — ctest's SKIP_RETURN_CODE — only on a machine
// without an NVIDIA GPU; where the machine has one and CUDA does not start, it fails.
#pragma once
#include <cuda_runtime_api.h>
#include <unistd.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "gpu_checks.h"
#include "segments/core/dtype.h"
#include "segments/cuda/device.h"

namespace segpipe::gputest {

// What this machine shows of a GPU and what cudaGetDeviceCount says (not cuda::device_count(),
// which turns every error into 0 devices).
inline GpuProbe probe_gpu() {
  GpuProbe p;
  p.device_node = access("/dev/nvidia0", F_OK) == 0;
  p.driver = access("/proc/driver/nvidia/version", F_OK) == 0;
  const cudaError_t e = cudaGetDeviceCount(&p.devices);
  p.runtime_ok = e == cudaSuccess;
  if (!p.runtime_ok) {
    p.devices = 0;
    p.error = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    cudaGetLastError();
  }
  return p;
}

// -1: a GPU works, test on; otherwise the exit code (77: no GPU on this machine; 1: CUDA broken).
inline int gpu_start(const char* test) { return gpu_verdict(probe_gpu(), test); }

// ||a - ref|| / ||ref|| in double; any NaN (an unwritten, poisoned element) gives infinity.
inline double rel_l2(const float* a, const float* ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (std::isnan(a[i]) || std::isnan(ref[i])) return INFINITY;
    double d = double(a[i]) - ref[i];
    num += d * d;
    den += double(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
}

inline std::vector<float> randn(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline std::vector<float> round_bf16(std::vector<float> v) {
  for (auto& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

// A device copy of host floats in dt (F32 or BF16).
struct Dev {
  cuda::Buffer<char> buf;
  DType dt = DType::F32;
  size_t n = 0;
  Dev() = default;
  Dev(const std::vector<float>& v, DType t) : dt(t), n(v.size()) {
    buf.grow(std::max<size_t>(1, n * dtype_size(t)));
    if (t == DType::F32) {
      SEGPIPE_CUDA_CHECK(cudaMemcpy(buf.get(), v.data(), n * 4, cudaMemcpyHostToDevice));
    } else {
      std::vector<uint16_t> h(n);
      for (size_t i = 0; i < n; i++) h[i] = f32_to_bf16(v[i]);
      SEGPIPE_CUDA_CHECK(cudaMemcpy(buf.get(), h.data(), n * 2, cudaMemcpyHostToDevice));
    }
  }
  // Uninitialized output of n elements, poisoned with all-ones bytes (NaN in F32 and BF16).
  static Dev poisoned(size_t n, DType t) {
    Dev d;
    d.dt = t;
    d.n = n;
    d.buf.grow(std::max<size_t>(1, n * dtype_size(t)));
    SEGPIPE_CUDA_CHECK(cudaMemset(d.buf.get(), 0xff, n * dtype_size(t)));
    SEGPIPE_CUDA_CHECK(cudaDeviceSynchronize());  // kernels run on a non-blocking stream
    return d;
  }
  void* p() const { return buf.get(); }
  float* f() const { return reinterpret_cast<float*>(buf.get()); }
  std::vector<float> host() const {
    SEGPIPE_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> v(n);
    if (dt == DType::F32) {
      SEGPIPE_CUDA_CHECK(cudaMemcpy(v.data(), buf.get(), n * 4, cudaMemcpyDeviceToHost));
    } else {
      std::vector<uint16_t> h(n);
      SEGPIPE_CUDA_CHECK(cudaMemcpy(h.data(), buf.get(), n * 2, cudaMemcpyDeviceToHost));
      for (size_t i = 0; i < n; i++) v[i] = bf16_to_f32(h[i]);
    }
    return v;
  }
};

template <typename T>
cuda::Buffer<T> upload(const std::vector<T>& v) {
  cuda::Buffer<T> b(std::max<size_t>(1, v.size()));
  SEGPIPE_CUDA_CHECK(cudaMemcpy(b.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return b;
}

template <typename T>
std::vector<T> download(const cuda::Buffer<T>& b, size_t n) {
  SEGPIPE_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> v(n);
  SEGPIPE_CUDA_CHECK(cudaMemcpy(v.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

}  // namespace segpipe::gputest
