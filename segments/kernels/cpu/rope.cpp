#include "segments/kernels/cpu/rope.h"

#include <cmath>

namespace segpipe {

Rope::Rope(int head_dim, double theta)
    : head_dim_(head_dim), inv_freq_(static_cast<size_t>(head_dim / 2)), axis_(static_cast<size_t>(head_dim / 2), 0) {
  // transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all in float32.
  float base = static_cast<float>(theta);
  for (int i = 0; i < head_dim / 2; i++) {
    float e = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq_[static_cast<size_t>(i)] = 1.0f / std::pow(base, e);
  }
}

void Rope::set_mrope_sections(const std::vector<int>& sections) {
  const std::vector<int> s = sections.size() >= 3 ? sections : std::vector<int>{24, 20, 20};
  const int half = head_dim_ / 2;
  for (int j = 0; j < half; j++) axis_[static_cast<size_t>(j)] = 0;
  // recomposition_frequencies: freqs[..., slice(offset, 3 * section[dim], 3)] = freq[dim] for dim 1, 2
  for (int dim = 1; dim <= 2; dim++)
    for (int j = dim; j < 3 * s[static_cast<size_t>(dim)] && j < half; j += 3) axis_[static_cast<size_t>(j)] = static_cast<uint8_t>(dim);
}

void Rope::apply(float* x, int heads, int64_t pos) const { apply3(x, heads, pos, pos, pos); }

void Rope::apply3(float* x, int heads, int64_t pt, int64_t ph, int64_t pw) const {
  int half = head_dim_ / 2;
  const float p[3] = {static_cast<float>(pt), static_cast<float>(ph), static_cast<float>(pw)};
  // float32 angles, as the reference's matmul of inv_freq and positions produces them.
  float c[512], s[512];
  std::vector<float> cbig, sbig;
  float* cp = c;
  float* sp = s;
  if (half > 512) {
    cbig.resize(static_cast<size_t>(half));
    sbig.resize(static_cast<size_t>(half));
    cp = cbig.data();
    sp = sbig.data();
  }
  for (int i = 0; i < half; i++) {
    float f = p[axis_[static_cast<size_t>(i)]] * inv_freq_[static_cast<size_t>(i)];
    cp[i] = std::cos(f);
    sp[i] = std::sin(f);
  }
  for (int h = 0; h < heads; h++) {
    float* v = x + static_cast<int64_t>(h) * head_dim_;
    for (int i = 0; i < half; i++) {
      float a = v[i], b = v[i + half];
      v[i] = a * cp[i] - b * sp[i];
      v[i + half] = b * cp[i] + a * sp[i];
    }
  }
}

}  // namespace segpipe
