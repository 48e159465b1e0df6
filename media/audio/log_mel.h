// The log-mel spectrogram of transformers' WhisperFeatureExtractor, as Qwen3-Omni's processor calls it
// (one clip, padding "longest" = none, no truncation): frames = samples / hop (the STFT's last frame
// dropped), then log10, a floor at (max - 8) over the whole clip, and (x + 4) / 4.
//
// The order of operations is the extractor's numpy path (float64 FFT, the spectrum stored as complex64,
// |X| with hypot in float64, squared, a float64 mel product with a 1e-10 floor, log10 in float64, cast to
// float32, the floor and the affine step in float32). The processor itself takes the torch path when
// torch is installed: the same formula in float32 throughout, so it differs from this by float32
// rounding (tests/media/audio_features_test.cpp states the tolerances).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace segpipe {

struct LogMelParams {
  int sample_rate = 16000;  // feature extractor's sampling_rate
  int n_fft = 400;          // window and FFT length
  int hop_length = 160;
  int n_mels = 128;         // feature_size
  double f_min = 0.0;       // WhisperFeatureExtractor fixes 0 .. 8000 Hz
  double f_max = 8000.0;
};

struct LogMelFeatures {
  int n_mels = 0;
  int64_t frames = 0;
  std::vector<float> data;  // [n_mels, frames] row-major (input_features[0] of the reference)
};

// Throws InputError naming `what` for NaN or infinite samples and for clips too short for the centred
// STFT (at most n_fft / 2 samples: torch.stft's reflect padding refuses them too); the parameters must be
// positive with n_fft >= 2 (InputError naming `what` otherwise).
LogMelFeatures whisper_log_mel(const float* wave, int64_t n, const LogMelParams& p, const std::string& what);

// frames the extractor gives for n samples (its attention-mask length): n / hop.
int64_t whisper_frames(int64_t n, int hop_length);

}  // namespace segpipe
