#include "media/image/smart_resize.h"

#include <algorithm>
#include <cfenv>
#include <cmath>

#include "segments/core/errors.h"

namespace segpipe::media {

namespace {

// Python's round() on a float: halves go to the even neighbour (std::nearbyint in the default mode).
double round_half_even(double x) {
  const int saved = std::fegetround();
  std::fesetround(FE_TONEAREST);
  const double r = std::nearbyint(x);
  std::fesetround(saved);
  return r;
}

}  // namespace

ResizedSize smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels, int64_t max_pixels,
                         const std::string& name) {
  if (height <= 0 || width <= 0 || factor <= 0)
    throw InputError(name + ": cannot resize a " + std::to_string(width) + "x" + std::to_string(height) + " image");
  // Every division below is Python's true division of ints: float64, as here.
  const double h = static_cast<double>(height), w = static_cast<double>(width), f = static_cast<double>(factor);
  const double ratio = std::max(h, w) / std::min(h, w);
  if (ratio > kMaxAspectRatio)
    throw InputError(name + ": aspect ratio " + std::to_string(ratio) + " (" + std::to_string(width) + "x" +
                     std::to_string(height) + ") is above the image processor's limit of 200");
  int64_t h_bar = static_cast<int64_t>(round_half_even(h / f)) * factor;
  int64_t w_bar = static_cast<int64_t>(round_half_even(w / f)) * factor;
  if (h_bar * w_bar > max_pixels) {
    const double beta = std::sqrt((h * w) / static_cast<double>(max_pixels));
    h_bar = std::max(factor, static_cast<int64_t>(std::floor(h / beta / f)) * factor);
    w_bar = std::max(factor, static_cast<int64_t>(std::floor(w / beta / f)) * factor);
  } else if (h_bar * w_bar < min_pixels) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / (h * w));
    h_bar = static_cast<int64_t>(std::ceil(h * beta / f)) * factor;
    w_bar = static_cast<int64_t>(std::ceil(w * beta / f)) * factor;
  }
  if (h_bar <= 0 || w_bar <= 0)
    throw InputError(name + ": the image processor's size rule gives an empty image for " + std::to_string(width) +
                     "x" + std::to_string(height));
  return {h_bar, w_bar};
}

}  // namespace segpipe::media
