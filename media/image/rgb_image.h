// A decoded picture as the image processor takes it: 8-bit RGB, rows top to bottom, the three samples of
// a pixel side by side. The same layout as numpy.asarray(PIL.Image) in mode "RGB", so goldens compare
// byte for byte.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace segpipe::media {

struct RgbImage {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> rgb;  // height * width * 3

  uint8_t at(int64_t y, int64_t x, int c) const { return rgb[static_cast<size_t>((y * width + x) * 3 + c)]; }
};

}  // namespace segpipe::media
