// Fuzz target: audio files (media/audio: libsndfile decoding, down-mix, libsoxr resampling, log-mel
// features). The input is written as a file and read the way `--audio FILE` reads it; only InputError
// may escape, and what is accepted must be finite, of the declared shape and within the limits.
// Seeds: the committed tests/data/media audio files (make_fuzz_seeds: OUT/audio_file/).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "fuzz_support.h"
#include "fuzz_write.h"
#include "media/audio/audio_decode.h"
#include "media/audio/audio_load.h"
#include "media/audio/log_mel.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace segpipe;
  // Short clips only (30 s): each input is decoded, resampled and turned into features.
  constexpr double kMaxSeconds = 30.0;
  const std::string path = fuzz::write_input("input.audio", data, size);
  if (path.empty()) return 0;
  fuzz::only_input_errors("decode_audio_file", [&] {
    const DecodedAudio d = decode_audio_file(path, kMaxSeconds);
    FUZZ_INVARIANT(d.frames > 0 && d.channels >= 1 && d.channels <= kMaxAudioChannels);
    FUZZ_INVARIANT(d.sample_rate >= 1 && d.sample_rate <= kMaxAudioSampleRate);
    FUZZ_INVARIANT(d.samples.size() == static_cast<size_t>(d.frames * d.channels));
    FUZZ_INVARIANT(static_cast<double>(d.frames) / d.sample_rate <= kMaxSeconds);
    for (float v : d.samples) FUZZ_INVARIANT(std::isfinite(v));
  });
  fuzz::only_input_errors("load_audio_mono + whisper_log_mel", [&] {
    const MonoAudio a = load_audio_mono(path, 16000, kMaxSeconds);
    for (float v : a.samples) FUZZ_INVARIANT(std::isfinite(v));
    LogMelParams p;
    p.n_mels = 16;  // the tiny checkpoints' width keeps each round cheap; the code path is the same
    const LogMelFeatures f = whisper_log_mel(a.samples.data(), static_cast<int64_t>(a.samples.size()), p, path);
    FUZZ_INVARIANT(f.frames == whisper_frames(static_cast<int64_t>(a.samples.size()), p.hop_length));
    FUZZ_INVARIANT(f.data.size() == static_cast<size_t>(f.n_mels * f.frames));
    // The floor at (max - 8) in log10 units is a range of 2 after (x + 4) / 4.
    float lo = f.data[0], hi = f.data[0];
    for (float v : f.data) {
      FUZZ_INVARIANT(std::isfinite(v));
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    FUZZ_INVARIANT(hi - lo <= 2.0f + 1e-5f * std::max(1.0f, std::fabs(hi)));
  });
  return 0;
}
