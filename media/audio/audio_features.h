// One call from an audio file to the features the Qwen3-Omni processor gives the model: decode,
// down-mix, resample to p.sample_rate (audio_load.h), then the Whisper log-mel spectrogram (log_mel.h).
#pragma once
#include <string>

#include "media/audio/audio_decode.h"
#include "media/audio/log_mel.h"

namespace segpipe {

// Every failure is an InputError naming the file.
LogMelFeatures audio_file_features(const std::string& path, const LogMelParams& p,
                                   double max_seconds = kMaxAudioSeconds);

}  // namespace segpipe
