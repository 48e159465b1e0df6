// An audio file as the feature extractor takes it: decoded, down-mixed to mono, resampled to the
// feature extractor's rate (librosa.load(path, sr=rate) in the reference pipeline).
#pragma once
#include <string>
#include <vector>

#include "media/audio/audio_decode.h"

namespace segpipe {

struct MonoAudio {
  std::vector<float> samples;  // mono at `sample_rate`
  int sample_rate = 0;
  int source_rate = 0;  // the file's own rate
  int source_channels = 0;
};

MonoAudio load_audio_mono(const std::string& path, int sample_rate, double max_seconds = kMaxAudioSeconds);

}  // namespace segpipe
