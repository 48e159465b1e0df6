// Audio files to samples with libsndfile: WAV, FLAC, OGG (Vorbis, Opus) and MP3, each where the
// installed libsndfile was built with it (Debian 12's 1.2.0 has all four). Samples come as float32 in
// [-1, 1) the way libsndfile scales integer PCM (int16 / 32768): the same numbers soundfile, and so
// librosa.load, give the reference pipeline.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace segpipe {

// The longest audio accepted: 20 minutes. Qwen3-Omni's processor does not truncate (its own config caps
// a clip at chunk_length 300 s only when truncation is on); 20 minutes at 16 kHz is 120,000 feature frames
// and 15,600 audio tokens, already past what a thinker prompt should hold. Longer is refused as absurd
// before any sample is read.
constexpr double kMaxAudioSeconds = 1200.0;
// More channels than any real recording format carries (libsndfile itself allows 1024).
constexpr int kMaxAudioChannels = 64;
// Sample rates a real file has: 1 Hz .. 768 kHz.
constexpr int kMaxAudioSampleRate = 768000;

struct DecodedAudio {
  std::vector<float> samples;  // interleaved: frame-major, [frames, channels]
  int64_t frames = 0;
  int channels = 0;
  int sample_rate = 0;
  std::string format;  // libsndfile's name of the container and encoding, for messages
};

// Reads the whole file. Throws InputError naming `path` for: a missing or unreadable file, a format
// libsndfile does not know, no samples, more than max_seconds of audio, a bad channel count or rate,
// a file cut short (fewer frames than its header declares) and NaN or infinite samples.
DecodedAudio decode_audio_file(const std::string& path, double max_seconds = kMaxAudioSeconds);

// The major formats the installed libsndfile reads ("WAV (Microsoft)", "FLAC (Free Lossless Audio
// Codec)", "MPEG-1/2 Audio", ...), for help texts and the tests.
std::vector<std::string> audio_formats_supported();

}  // namespace segpipe
