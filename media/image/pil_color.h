// PIL's integer colour arithmetic, reproduced so that decoded pixels equal PIL's byte for byte
// (Pillow src/libImaging/AlphaComposite.c and Convert.c).
#pragma once
#include <algorithm>
#include <cstdint>

namespace segpipe::media {

// Image.alpha_composite(white opaque background, src): the colour a pixel (r, g, b, a) shows over white.
// Integer arithmetic with 7 extra bits and rounded divisions by 255, as Pillow computes it.
inline void composite_on_white(uint8_t r, uint8_t g, uint8_t b, uint8_t a, uint8_t* out) {
  if (a == 0) {  // Pillow copies the background pixel
    out[0] = out[1] = out[2] = 255;
    return;
  }
  constexpr uint32_t kPrecisionBits = 7;
  const uint32_t blend = 255u * (255u - a);  // background alpha is 255
  const uint32_t outa255 = a * 255u + blend;
  const uint32_t coef1 = a * 255u * 255u * (1u << kPrecisionBits) / outa255;
  const uint32_t coef2 = 255u * (1u << kPrecisionBits) - coef1;
  auto channel = [&](uint32_t s) {
    const uint32_t tmp = s * coef1 + 255u * coef2 + (0x80u << kPrecisionBits);
    return static_cast<uint8_t>(((((tmp >> 8) + tmp) >> 8)) >> kPrecisionBits);
  };
  out[0] = channel(r);
  out[1] = channel(g);
  out[2] = channel(b);
}

// Pillow's cmyk2rgb on (already un-inverted) CMYK samples.
inline void cmyk_to_rgb(uint8_t c, uint8_t m, uint8_t y, uint8_t k, uint8_t* out) {
  const int nk = 255 - k;
  auto mul_div_255 = [](int a, int b) {
    const int tmp = a * b + 128;
    return ((tmp >> 8) + tmp) >> 8;
  };
  out[0] = static_cast<uint8_t>(std::clamp(nk - mul_div_255(c, nk), 0, 255));
  out[1] = static_cast<uint8_t>(std::clamp(nk - mul_div_255(m, nk), 0, 255));
  out[2] = static_cast<uint8_t>(std::clamp(nk - mul_div_255(y, nk), 0, 255));
}

}  // namespace segpipe::media
