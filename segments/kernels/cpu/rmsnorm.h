// RMSNorm as transformers computes it: x * rsqrt(mean(x^2) + eps), then weight * that.
#pragma once
#include <cstdint>

namespace segpipe {

// rows of n values; y may alias x. The mean of squares is accumulated in double in order, so it is
// independent of threads and closer to the exact value than any float32 order.
void rmsnorm(const float* x, int64_t rows, int64_t n, const float* weight, float eps, float* y);

}  // namespace segpipe
