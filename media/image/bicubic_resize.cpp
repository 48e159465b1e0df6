#include "media/image/bicubic_resize.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "segments/core/errors.h"

namespace segpipe::media {

namespace {

// HelperInterpCubic::aa_filter<double, use_keys_cubic=true>.
double cubic_filter(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;  // cubic_convolution1
  if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;  // cubic_convolution2
  return 0.0;
}

// One axis: for output index i, taps xmin[i] .. xmin[i] + xsize[i] - 1 with int16 weights.
struct Taps {
  std::vector<int64_t> xmin, xsize;
  std::vector<int16_t> weights;  // output_size * max_taps
  int64_t max_taps = 0;
  unsigned precision = 0;
};

// HelperInterpBase::_compute_index_ranges_weights (antialias) in double, then
// _compute_index_ranges_int16_weights.
Taps compute_taps(int64_t in_size, int64_t out_size) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);  // area_pixel_compute_scale
  constexpr int interp_size = 4;
  const double support = scale >= 1.0 ? (interp_size * 0.5) * scale : interp_size * 0.5;
  Taps t;
  t.max_taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  t.xmin.resize(static_cast<size_t>(out_size));
  t.xsize.resize(static_cast<size_t>(out_size));
  std::vector<double> w(static_cast<size_t>(out_size * t.max_taps), 0.0);
  double wt_max = 0.0;
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  for (int64_t i = 0; i < out_size; i++) {
    const double center = scale * (static_cast<double>(i) + 0.5);
    const int64_t xmin = std::max(static_cast<int64_t>(center - support + 0.5), int64_t{0});
    int64_t xsize = std::min(static_cast<int64_t>(center + support + 0.5), in_size) - xmin;
    xsize = std::clamp(xsize, int64_t{0}, t.max_taps);
    double* wi = w.data() + i * t.max_taps;
    double total = 0.0;
    for (int64_t j = 0; j < xsize; j++) {
      wi[j] = cubic_filter((static_cast<double>(j + xmin) - center + 0.5) * invscale);
      total += wi[j];
    }
    if (total != 0.0) {
      for (int64_t j = 0; j < xsize; j++) {
        wi[j] /= total;
        wt_max = std::max(wt_max, wi[j]);
      }
    }
    t.xmin[static_cast<size_t>(i)] = xmin;
    t.xsize[static_cast<size_t>(i)] = xsize;
  }
  unsigned precision = 0;
  for (precision = 0; precision < 22; ++precision) {
    const int next_value = static_cast<int>(0.5 + wt_max * (1 << (precision + 1)));
    if (next_value >= (1 << 15)) break;
  }
  t.precision = precision;
  t.weights.resize(w.size());
  for (size_t k = 0; k < w.size(); k++) {
    const double v = w[k] * (1 << precision);
    t.weights[k] = static_cast<int16_t>(v < 0 ? static_cast<int>(-0.5 + v) : static_cast<int>(0.5 + v));
  }
  return t;
}

inline uint8_t accumulate(const uint8_t* src, int64_t stride, const int16_t* w, int64_t n, unsigned precision) {
  int out = 1 << (precision - 1);  // the +0.5 of the rounding
  for (int64_t j = 0; j < n; j++) out += src[j * stride] * w[j];
  return static_cast<uint8_t>(std::clamp(out >> precision, 0, 255));
}

RgbImage resize_width(const RgbImage& in, int64_t out_w) {
  const Taps t = compute_taps(in.width, out_w);
  RgbImage out;
  out.width = out_w;
  out.height = in.height;
  out.rgb.resize(static_cast<size_t>(out.width * out.height * 3));
  for (int64_t y = 0; y < in.height; y++) {
    const uint8_t* row = in.rgb.data() + y * in.width * 3;
    uint8_t* orow = out.rgb.data() + y * out_w * 3;
    for (int64_t x = 0; x < out_w; x++) {
      const int16_t* w = t.weights.data() + x * t.max_taps;
      for (int c = 0; c < 3; c++)
        orow[x * 3 + c] = accumulate(row + t.xmin[static_cast<size_t>(x)] * 3 + c, 3, w,
                                     t.xsize[static_cast<size_t>(x)], t.precision);
    }
  }
  return out;
}

RgbImage resize_height(const RgbImage& in, int64_t out_h) {
  const Taps t = compute_taps(in.height, out_h);
  RgbImage out;
  out.width = in.width;
  out.height = out_h;
  out.rgb.resize(static_cast<size_t>(out.width * out.height * 3));
  const int64_t stride = in.width * 3;
  for (int64_t y = 0; y < out_h; y++) {
    const int16_t* w = t.weights.data() + y * t.max_taps;
    const uint8_t* top = in.rgb.data() + t.xmin[static_cast<size_t>(y)] * stride;
    uint8_t* orow = out.rgb.data() + y * stride;
    for (int64_t k = 0; k < stride; k++)
      orow[k] = accumulate(top + k, stride, w, t.xsize[static_cast<size_t>(y)], t.precision);
  }
  return out;
}

}  // namespace

RgbImage resize_bicubic_antialias(const RgbImage& in, int64_t out_height, int64_t out_width) {
  SEGPIPE_ASSERT(in.width > 0 && in.height > 0 && out_height > 0 && out_width > 0);
  if (out_height == in.height && out_width == in.width) return in;
  if (out_width == in.width) return resize_height(in, out_height);
  RgbImage horizontal = resize_width(in, out_width);
  if (out_height == in.height) return horizontal;
  return resize_height(horizontal, out_height);
}

}  // namespace segpipe::media
