#include "media/audio/audio_load.h"

#include "media/audio/audio_downmix.h"
#include "media/audio/audio_resample.h"

namespace segpipe {

MonoAudio load_audio_mono(const std::string& path, int sample_rate, double max_seconds) {
  DecodedAudio d = decode_audio_file(path, max_seconds);
  MonoAudio out;
  out.sample_rate = sample_rate;
  out.source_rate = d.sample_rate;
  out.source_channels = d.channels;
  // librosa.load: mono first, then resample (one channel through the resampler, not two).
  std::vector<float> mono = downmix_mean(d.samples.data(), d.frames, d.channels);
  d.samples = {};
  out.samples = resample_soxr_hq(mono.data(), static_cast<int64_t>(mono.size()), d.sample_rate, sample_rate,
                                 "audio file " + path);
  return out;
}

}  // namespace segpipe
