// The slaney-style mel filter bank of transformers.audio_utils.mel_filter_bank(norm="slaney",
// mel_scale="slaney"), which WhisperFeatureExtractor builds with min 0 Hz and max 8000 Hz: triangular
// filters between mel-spaced edges, each scaled by 2 / (upper edge - lower edge) Hz. Computed in float64
// with numpy's order of operations (linspace as i * step + start, the same slopes and divisions), so
// that it equals the reference's array to the last bit or within an ulp.
#pragma once
#include <vector>

namespace segpipe {

// [n_freq, n_mels] row-major, float64 (the reference's layout and type).
std::vector<double> slaney_mel_filter_bank(int n_freq, int n_mels, double f_min, double f_max, int sample_rate);

}  // namespace segpipe
