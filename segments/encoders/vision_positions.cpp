#include "segments/encoders/vision_positions.h"

#include <algorithm>
#include <cmath>

namespace segpipe {

std::vector<float> torch_linspace(float start, float end, int64_t steps) {
  std::vector<float> out(static_cast<size_t>(std::max<int64_t>(steps, 0)));
  if (steps == 1) out[0] = start;
  if (steps <= 1) return out;
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int64_t halfway = steps / 2;
  for (int64_t i = 0; i < steps; i++)
    out[static_cast<size_t>(i)] = i < halfway ? start + step * static_cast<float>(i)
                                              : end - step * static_cast<float>(steps - i - 1);
  return out;
}

std::vector<float> interpolate_position_embedding(const float* table, int side, int64_t dim,
                                                  const std::vector<VisionGrid>& grids, int64_t merge) {
  int64_t total = 0;
  for (const auto& g : grids) total += g.patches();
  std::vector<float> out(static_cast<size_t>(total * dim));
  float* dst = out.data();
  const float last = static_cast<float>(side - 1);
  std::vector<float> row(static_cast<size_t>(dim));
  for (const auto& g : grids) {
    const std::vector<float> hs = torch_linspace(0.0f, last, g.h), ws = torch_linspace(0.0f, last, g.w);
    // One frame's embeddings in grid order, then reordered into blocks below.
    std::vector<float> frame(static_cast<size_t>(g.h * g.w * dim));
    for (int64_t y = 0; y < g.h; y++) {
      const float hy = hs[static_cast<size_t>(y)];
      const int64_t hf = static_cast<int64_t>(hy);  // .int(): truncation (the values are >= 0)
      const int64_t hc = std::min<int64_t>(hf + 1, side - 1);
      const float dh = hy - static_cast<float>(hf);
      for (int64_t x = 0; x < g.w; x++) {
        const float wx = ws[static_cast<size_t>(x)];
        const int64_t wf = static_cast<int64_t>(wx);
        const int64_t wc = std::min<int64_t>(wf + 1, side - 1);
        const float dw = wx - static_cast<float>(wf);
        const float w00 = (1.0f - dh) * (1.0f - dw), w01 = (1.0f - dh) * dw, w10 = dh * (1.0f - dw), w11 = dh * dw;
        const float* e00 = table + (hf * side + wf) * dim;
        const float* e01 = table + (hf * side + wc) * dim;
        const float* e10 = table + (hc * side + wf) * dim;
        const float* e11 = table + (hc * side + wc) * dim;
        float* o = frame.data() + (y * g.w + x) * dim;
        for (int64_t d = 0; d < dim; d++) o[d] = ((e00[d] * w00 + e01[d] * w01) + e10[d] * w10) + e11[d] * w11;
      }
    }
    for (int64_t t = 0; t < g.t; t++)
      for (int64_t bh = 0; bh < g.h / merge; bh++)
        for (int64_t bw = 0; bw < g.w / merge; bw++)
          for (int64_t mh = 0; mh < merge; mh++)
            for (int64_t mw = 0; mw < merge; mw++) {
              const float* src = frame.data() + ((bh * merge + mh) * g.w + (bw * merge + mw)) * dim;
              std::copy(src, src + dim, dst);
              dst += dim;
            }
  }
  return out;
}

std::vector<float> vision_rotary_freqs(const std::vector<VisionGrid>& grids, int64_t merge, int64_t head_dim,
                                       double theta) {
  // Qwen3OmniMoeVisionRotaryEmbedding(dim = head_dim / 2): inv_freq = 1.0 / theta ** (arange(0, dim, 2) / dim),
  // each step in float32 as the reference's buffer is (the power evaluated in double and rounded once).
  const int64_t dim = head_dim / 2;
  const int64_t nfreq = dim / 2;
  std::vector<float> inv(static_cast<size_t>(nfreq));
  for (int64_t k = 0; k < nfreq; k++) {
    const float e = static_cast<float>(2 * k) / static_cast<float>(dim);
    const float power = static_cast<float>(std::pow(theta, static_cast<double>(e)));
    inv[static_cast<size_t>(k)] = 1.0f / power;
  }
  int64_t total = 0;
  for (const auto& g : grids) total += g.patches();
  std::vector<float> out(static_cast<size_t>(total * dim));
  float* dst = out.data();
  for (const auto& g : grids)
    for (int64_t t = 0; t < g.t; t++)
      for (int64_t bh = 0; bh < g.h / merge; bh++)
        for (int64_t bw = 0; bw < g.w / merge; bw++)
          for (int64_t mh = 0; mh < merge; mh++)
            for (int64_t mw = 0; mw < merge; mw++) {
              const float r = static_cast<float>(bh * merge + mh), c = static_cast<float>(bw * merge + mw);
              for (int64_t k = 0; k < nfreq; k++) dst[k] = r * inv[static_cast<size_t>(k)];
              for (int64_t k = 0; k < nfreq; k++) dst[nfreq + k] = c * inv[static_cast<size_t>(k)];
              dst += dim;
            }
  return out;
}

}  // namespace segpipe
