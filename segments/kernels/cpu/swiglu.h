// SwiGLU gate: out = silu(gate) * up, silu(x) = x * sigmoid(x). out may alias gate.
#pragma once
#include <cmath>
#include <cstdint>

namespace segpipe {

inline void swiglu(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; i++) {
    float g = gate[i];
    out[i] = (g / (1.0f + std::exp(-g))) * up[i];
  }
}

}  // namespace segpipe
