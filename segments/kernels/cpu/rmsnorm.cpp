#include "segments/kernels/cpu/rmsnorm.h"

#include <cmath>

namespace segpipe {

void rmsnorm(const float* x, int64_t rows, int64_t n, const float* weight, float eps, float* y) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += static_cast<double>(xr[i]) * xr[i];
    float var = static_cast<float>(ss / static_cast<double>(n));
    float inv = 1.0f / std::sqrt(var + eps);
    for (int64_t i = 0; i < n; i++) yr[i] = weight[i] * (xr[i] * inv);
  }
}

}  // namespace segpipe
