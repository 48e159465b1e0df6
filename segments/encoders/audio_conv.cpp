#include "segments/encoders/audio_conv.h"

#include "segments/kernels/cpu/linear.h"

namespace segpipe {

void conv3x3_stride2(ThreadPool& pool, const float* in, int64_t c_in, int64_t h, int64_t w, const Mat& weight,
                     const std::vector<float>& bias, std::vector<float>& out) {
  const int64_t ho = conv3s2_out(h), wo = conv3s2_out(w), c_out = weight.rows, k = c_in * 9;
  const int64_t P = ho * wo;
  std::vector<float> patches(static_cast<size_t>(P * k));
  pool.parallel_for(P, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
      const int64_t oy = p / wo, ox = p % wo;
      float* row = patches.data() + p * k;
      for (int64_t c = 0; c < c_in; c++)
        for (int64_t ky = 0; ky < 3; ky++)
          for (int64_t kx = 0; kx < 3; kx++) {
            const int64_t y = 2 * oy - 1 + ky, x = 2 * ox - 1 + kx;  // padding 1: outside reads zero
            row[c * 9 + ky * 3 + kx] = (y >= 0 && y < h && x >= 0 && x < w) ? in[(c * h + y) * w + x] : 0.0f;
          }
    }
  }, 16);
  std::vector<float> y(static_cast<size_t>(P * c_out));
  linear(pool, patches.data(), P, weight, y.data());
  out.assign(static_cast<size_t>(c_out * P), 0.0f);
  // [positions, c_out] -> [c_out, ho, wo], plus the bias (torch adds it to the finished sum too).
  for (int64_t p = 0; p < P; p++)
    for (int64_t c = 0; c < c_out; c++) out[static_cast<size_t>(c * P + p)] = y[static_cast<size_t>(p * c_out + c)] + bias[static_cast<size_t>(c)];
}

}  // namespace segpipe
