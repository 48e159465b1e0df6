#include "media/audio/audio_features.h"

#include "media/audio/audio_load.h"

namespace segpipe {

LogMelFeatures audio_file_features(const std::string& path, const LogMelParams& p, double max_seconds) {
  const MonoAudio a = load_audio_mono(path, p.sample_rate, max_seconds);
  return whisper_log_mel(a.samples.data(), static_cast<int64_t>(a.samples.size()), p, "audio file " + path);
}

}  // namespace segpipe
