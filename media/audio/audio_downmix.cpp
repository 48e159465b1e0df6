#include "media/audio/audio_downmix.h"

#include <cstddef>

namespace segpipe {

std::vector<float> downmix_mean(const float* interleaved, int64_t frames, int channels) {
  std::vector<float> out(static_cast<size_t>(frames));
  if (channels == 1) {
    out.assign(interleaved, interleaved + frames);
    return out;
  }
  // np.mean(y, axis=0) on float32 [channels, frames]: the channel rows added in order in float32, then
  // divided by the count in float32.
  const float count = static_cast<float>(channels);
  for (int64_t t = 0; t < frames; t++) {
    const float* row = interleaved + t * channels;
    float sum = row[0];
    for (int c = 1; c < channels; c++) sum += row[c];
    out[static_cast<size_t>(t)] = sum / count;
  }
  return out;
}

}  // namespace segpipe
