#include "media/audio/log_mel.h"

#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>

#include "media/audio/mel_filter_bank.h"
#include "segments/core/errors.h"

namespace segpipe {

namespace {

// FFTW's planner is not thread-safe (executing a plan is): plans are made under this lock.
std::mutex& fftw_planner_mutex() {
  static std::mutex m;
  return m;
}

struct FftwPlan {
  fftw_plan plan = nullptr;
  ~FftwPlan() {
    if (plan) {
      std::lock_guard<std::mutex> lock(fftw_planner_mutex());
      fftw_destroy_plan(plan);
    }
  }
};

struct FftwFree {
  void operator()(void* p) const { fftw_free(p); }
};

// transformers.audio_utils.window_function(n, "hann", periodic=True) = np.hanning(n + 1)[:-1], and
// np.hanning(M) = 0.5 + 0.5 * cos(pi * k / (M - 1)) for k = 1 - M, 3 - M, ..., M - 1.
std::vector<double> periodic_hann(int n) {
  const int M = n + 1;
  std::vector<double> w(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) {
    const double k = static_cast<double>(1 - M + 2 * i);
    w[static_cast<size_t>(i)] = 0.5 + 0.5 * std::cos(M_PI * k / (M - 1));
  }
  return w;
}

}  // namespace

int64_t whisper_frames(int64_t n, int hop_length) { return n / hop_length; }

LogMelFeatures whisper_log_mel(const float* wave, int64_t n, const LogMelParams& p, const std::string& what) {
  if (p.sample_rate <= 0 || p.n_fft < 2 || p.hop_length <= 0 || p.n_mels <= 0 || !(p.f_max > p.f_min) || p.f_min < 0)
    throw InputError(what + ": bad feature extractor parameters (sampling_rate " + std::to_string(p.sample_rate) +
                     ", n_fft " + std::to_string(p.n_fft) + ", hop_length " + std::to_string(p.hop_length) +
                     ", feature_size " + std::to_string(p.n_mels) + ")");
  const int64_t half = p.n_fft / 2;
  if (n <= half)
    throw InputError(what + ": " + std::to_string(n) + " samples is too short for the features (more than " +
                     std::to_string(half) + " needed at " + std::to_string(p.sample_rate) + " Hz)");
  for (int64_t i = 0; i < n; i++)
    if (!std::isfinite(wave[i]))
      throw InputError(what + ": " + (std::isnan(wave[i]) ? "NaN" : "infinite") + " sample at " + std::to_string(i));

  const int n_freq = p.n_fft / 2 + 1;
  // The STFT makes 1 + n / hop centred frames; the extractor drops the last one.
  const int64_t frames = whisper_frames(n, p.hop_length);
  LogMelFeatures out;
  out.n_mels = p.n_mels;
  out.frames = frames;
  out.data.assign(static_cast<size_t>(p.n_mels * frames), 0.0f);
  if (frames == 0) return out;

  const std::vector<double> window = periodic_hann(p.n_fft);
  const std::vector<double> fb = slaney_mel_filter_bank(n_freq, p.n_mels, p.f_min, p.f_max, p.sample_rate);

  // np.pad(waveform, n_fft // 2, mode="reflect"), then float64.
  auto padded_at = [&](int64_t j) -> double {
    int64_t i = j - half;
    if (i < 0) i = -i;
    if (i >= n) i = 2 * (n - 1) - i;
    return static_cast<double>(wave[i]);
  };

  std::unique_ptr<double, FftwFree> in(static_cast<double*>(fftw_malloc(sizeof(double) * p.n_fft)));
  std::unique_ptr<fftw_complex, FftwFree> spec(
      static_cast<fftw_complex*>(fftw_malloc(sizeof(fftw_complex) * static_cast<size_t>(n_freq))));
  if (!in || !spec) throw RuntimeFailure("out of memory for the audio FFT");
  FftwPlan plan;
  {
    // FFTW_ESTIMATE: the plan (and so every rounding) is the same on every run; MEASURE would time
    // candidates and could pick a different algorithm each time.
    std::lock_guard<std::mutex> lock(fftw_planner_mutex());
    plan.plan = fftw_plan_dft_r2c_1d(p.n_fft, in.get(), spec.get(), FFTW_ESTIMATE);
  }
  if (!plan.plan) throw RuntimeFailure("FFTW could not plan a real FFT of length " + std::to_string(p.n_fft));

  std::vector<double> power(static_cast<size_t>(n_freq));
  std::vector<float> log_spec(static_cast<size_t>(p.n_mels * frames));
  for (int64_t t = 0; t < frames; t++) {
    const int64_t start = t * p.hop_length;
    for (int i = 0; i < p.n_fft; i++) in.get()[i] = padded_at(start + i) * window[static_cast<size_t>(i)];
    fftw_execute_dft_r2c(plan.plan, in.get(), spec.get());
    for (int k = 0; k < n_freq; k++) {
      // The reference stores the spectrum as complex64, then takes |X| in float64 (hypot) and squares it.
      const double re = static_cast<float>(spec.get()[k][0]);
      const double im = static_cast<float>(spec.get()[k][1]);
      const double mag = std::hypot(re, im);
      power[static_cast<size_t>(k)] = mag * mag;
    }
    for (int m = 0; m < p.n_mels; m++) {
      double acc = 0.0;
      for (int k = 0; k < n_freq; k++) acc += fb[static_cast<size_t>(k) * p.n_mels + m] * power[static_cast<size_t>(k)];
      // np.maximum(mel_floor=1e-10, mel), np.log10, cast to float32.
      log_spec[static_cast<size_t>(m * frames + t)] = static_cast<float>(std::log10(std::max(1e-10, acc)));
    }
  }
  // Whisper: floor at (max - 8) over the whole clip, then (x + 4) / 4, in float32.
  const float mx = *std::max_element(log_spec.begin(), log_spec.end());
  const float floor_v = static_cast<float>(static_cast<double>(mx) - 8.0);
  for (size_t i = 0; i < log_spec.size(); i++) out.data[i] = (std::max(log_spec[i], floor_v) + 4.0f) / 4.0f;
  return out;
}

}  // namespace segpipe
