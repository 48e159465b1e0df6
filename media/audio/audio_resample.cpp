#include "media/audio/audio_resample.h"

#include <soxr.h>

#include "segments/core/errors.h"

namespace segpipe {

int64_t resampled_length(int64_t n, int in_rate, int out_rate) {
  // ceil(n * out / in) without floating point; the callers' n (< 2^27 samples, decode's cap) and rates
  // (< 2^20 Hz) keep n * out far inside int64.
  SEGPIPE_ASSERT(n >= 0 && n < (int64_t{1} << 40) && in_rate > 0 && out_rate > 0 && out_rate < (1 << 22));
  return (n * out_rate + in_rate - 1) / in_rate;
}

std::vector<float> resample_soxr_hq(const float* x, int64_t n, int in_rate, int out_rate, const std::string& what) {
  if (in_rate <= 0 || out_rate <= 0 || out_rate >= (1 << 22) || n < 0 || n >= (int64_t{1} << 40))
    throw InputError(what + ": cannot resample " + std::to_string(n) + " samples from " + std::to_string(in_rate) +
                     " Hz to " + std::to_string(out_rate) + " Hz");
  if (in_rate == out_rate) return std::vector<float>(x, x + n);
  const int64_t n_out = resampled_length(n, in_rate, out_rate);
  std::vector<float> y(static_cast<size_t>(n_out) + 16, 0.0f);
  // HQ: the recipe python-soxr's quality "HQ" selects (20-bit precision, its default pass band and
  // phase), float32 in and out as librosa hands soxr its float32 waveform; one thread for the same
  // result on every machine.
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
  const soxr_runtime_spec_t rt = soxr_runtime_spec(1);
  size_t done = 0;
  const soxr_error_t err = soxr_oneshot(static_cast<double>(in_rate), static_cast<double>(out_rate), 1, x,
                                        static_cast<size_t>(n), nullptr, y.data(), y.size(), &done, &io, &q, &rt);
  if (err) throw InputError(what + ": resampling from " + std::to_string(in_rate) + " Hz to " + std::to_string(out_rate) +
                            " Hz failed (libsoxr: " + err + ")");
  // librosa's fix_length: exactly ceil(n * out / in) samples, zero-padded if soxr gave fewer.
  y.resize(static_cast<size_t>(n_out));
  for (size_t i = done; i < y.size(); i++) y[i] = 0.0f;
  return y;
}

}  // namespace segpipe
