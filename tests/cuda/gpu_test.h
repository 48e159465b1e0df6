// A small harness for the GPU tests (no GoogleTest: they must build on GPU machines that lack it).
// A test exits 77 — ctest's SKIP_RETURN_CODE — with one line saying why when no GPU is visible, so
// that on a machine without a GPU it is neither failed nor passed.
#pragma once
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "segments/core/dtype.h"
#include "segments/cuda/device.h"

namespace segpipe::gputest {

constexpr int kSkip = 77;

inline bool skip_without_gpu(const char* test) {
  if (cuda::device_count() > 0) return false;
  std::printf("SKIPPED: %s: no CUDA device is visible to this process\n", test);
  return true;
}

struct Checks {
  int failed = 0, passed = 0;
  __attribute__((format(printf, 3, 4))) void expect(bool ok, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::printf("  %s ", ok ? "ok  " : "FAIL");
    std::vprintf(fmt, ap);
    std::printf("\n");
    va_end(ap);
    (ok ? passed : failed)++;
  }
  int finish(const char* test) {
    std::printf("%s: %d passed, %d failed\n", test, passed, failed);
    return failed ? 1 : 0;
  }
};

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
