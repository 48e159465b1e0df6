#include "media/audio/mel_filter_bank.h"

#include <algorithm>
#include <cmath>

namespace segpipe {

namespace {

// transformers.audio_utils.hertz_to_mel / mel_to_hertz, mel_scale="slaney": linear below 1 kHz
// (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4).
constexpr double kMinLogHertz = 1000.0;
constexpr double kMinLogMel = 15.0;

double hertz_to_mel(double f) {
  if (f >= kMinLogHertz) return kMinLogMel + std::log(f / kMinLogHertz) * (27.0 / std::log(6.4));
  return 3.0 * f / 200.0;
}

double mel_to_hertz(double m) {
  if (m >= kMinLogMel) return kMinLogHertz * std::exp((std::log(6.4) / 27.0) * (m - kMinLogMel));
  return 200.0 * m / 3.0;
}

// np.linspace(start, stop, num): i * ((stop - start) / (num - 1)) + start, the last set to stop.
std::vector<double> linspace(double start, double stop, int num) {
  std::vector<double> y(static_cast<size_t>(num));
  const double step = (stop - start) / (num - 1);
  for (int i = 0; i < num; i++) y[static_cast<size_t>(i)] = static_cast<double>(i) * step + start;
  if (num > 1) y.back() = stop;
  return y;
}

}  // namespace

std::vector<double> slaney_mel_filter_bank(int n_freq, int n_mels, double f_min, double f_max, int sample_rate) {
  const std::vector<double> mel_edges = linspace(hertz_to_mel(f_min), hertz_to_mel(f_max), n_mels + 2);
  std::vector<double> edges(mel_edges.size());
  for (size_t i = 0; i < edges.size(); i++) edges[i] = mel_to_hertz(mel_edges[i]);
  // fft_freqs = np.linspace(0, sampling_rate // 2, num_frequency_bins): integer Nyquist, as the reference.
  const std::vector<double> fft_freqs = linspace(0.0, static_cast<double>(sample_rate / 2), n_freq);
  std::vector<double> diff(edges.size() - 1);
  for (size_t i = 0; i + 1 < edges.size(); i++) diff[i] = edges[i + 1] - edges[i];
  std::vector<double> fb(static_cast<size_t>(n_freq) * n_mels);
  for (int f = 0; f < n_freq; f++) {
    for (int m = 0; m < n_mels; m++) {
      // _create_triangular_filter_bank: slopes = edge - fft_freq; down = -slope[m] / diff[m],
      // up = slope[m + 2] / diff[m + 1]; max(0, min(down, up)).
      const double down = -(edges[m] - fft_freqs[f]) / diff[m];
      const double up = (edges[m + 2] - fft_freqs[f]) / diff[m + 1];
      double w = std::max(0.0, std::min(down, up));
      // Slaney normalisation: 2 / (upper edge - lower edge).
      w *= 2.0 / (edges[m + 2] - edges[m]);
      fb[static_cast<size_t>(f) * n_mels + m] = w;
    }
  }
  return fb;
}

}  // namespace segpipe
