// The element-wise and per-row functions both Qwen3-Omni towers use beside the shared CPU kernels: the
// two GELU forms and nn.LayerNorm, each in double and rounded once, in a fixed order (thread-count
// independent: a row is computed by one thread).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "segments/kernels/cpu/thread_pool.h"

namespace segpipe {

// F.gelu / nn.GELU(): the exact form with erf.
inline float gelu_erf(float x) {
  const double v = x;
  return static_cast<float>(0.5 * v * (1.0 + std::erf(v * M_SQRT1_2)));
}

// ACT2FN["gelu_pytorch_tanh"]: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
inline float gelu_tanh(float x) {
  const double v = x;
  const double k = 0.7978845608028654;  // sqrt(2 / pi)
  return static_cast<float>(0.5 * v * (1.0 + std::tanh(k * (v + 0.044715 * v * v * v))));
}

// nn.LayerNorm over rows of n: mean and biased variance in double (two passes), then
// (x - mean) / sqrt(var + eps) * w + b. x [T, n] -> y [T, n].
inline void layer_norm(ThreadPool& pool, const float* x, int64_t T, int64_t n, const std::vector<float>& w,
                       const std::vector<float>& b, double eps, float* y) {
  pool.parallel_for(T, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const float* r = x + t * n;
      double mean = 0.0;
      for (int64_t i = 0; i < n; i++) mean += r[i];
      mean /= static_cast<double>(n);
      double var = 0.0;
      for (int64_t i = 0; i < n; i++) var += (r[i] - mean) * (r[i] - mean);
      var /= static_cast<double>(n);
      const double inv = 1.0 / std::sqrt(var + eps);
      float* o = y + t * n;
      for (int64_t i = 0; i < n; i++) o[i] = static_cast<float>((r[i] - mean) * inv) * w[i] + b[i];
    }
  }, 8);
}

}  // namespace segpipe
