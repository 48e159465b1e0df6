// Several channels to one, as the reference pipeline does it: librosa.load(mono=True) and transformers'
// load_audio both take the mean over channels, in float32 (numpy: a float32 sum, then a float32 divide).
#pragma once
#include <cstdint>
#include <vector>

namespace segpipe {

// interleaved [frames, channels] -> [frames]; channels == 1 copies.
std::vector<float> downmix_mean(const float* interleaved, int64_t frames, int channels);

}  // namespace segpipe
