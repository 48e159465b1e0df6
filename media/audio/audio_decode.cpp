#include "media/audio/audio_decode.h"

#include <sndfile.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <system_error>

#include "segments/core/errors.h"

namespace segpipe {

namespace {

// Decoded values held at once: 2^27 floats (512 MiB), so that a header declaring a long many-channel
// stream cannot make the decoder allocate more than that.
constexpr int64_t kMaxDecodedValues = int64_t{1} << 27;

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw InputError("audio file " + path + ": " + what);
}

struct SndfileCloser {
  void operator()(SNDFILE* f) const { sf_close(f); }
};

std::string format_name(int format) {
  SF_FORMAT_INFO major{};
  major.format = format & SF_FORMAT_TYPEMASK;
  SF_FORMAT_INFO sub{};
  sub.format = format & SF_FORMAT_SUBMASK;
  std::string s = sf_command(nullptr, SFC_GET_FORMAT_INFO, &major, sizeof(major)) == 0 && major.name
                      ? major.name
                      : "unknown container";
  if (sf_command(nullptr, SFC_GET_FORMAT_INFO, &sub, sizeof(sub)) == 0 && sub.name) s += std::string(", ") + sub.name;
  return s;
}

// libsndfile accepts a WAV/AIFF whose data chunk is longer than the file and silently reads what is
// there; its log says so. A file cut short must not pass for a shorter recording.
bool log_says_truncated(SNDFILE* f) {
  char log[8192] = {0};
  sf_command(f, SFC_GET_LOG_INFO, log, sizeof(log) - 1);
  const std::string s(log);
  return s.find("should be") != std::string::npos || s.find("truncated") != std::string::npos ||
         s.find("Truncated") != std::string::npos;
}

}  // namespace

DecodedAudio decode_audio_file(const std::string& path, double max_seconds) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) bad(path, "no such file");
  if (!std::filesystem::is_regular_file(st)) bad(path, "not a regular file");
  if (std::filesystem::file_size(path, ec) == 0 || ec) bad(path, "the file is empty");

  SF_INFO info{};
  std::unique_ptr<SNDFILE, SndfileCloser> f(sf_open(path.c_str(), SFM_READ, &info));
  if (!f) bad(path, std::string("not a readable audio file (libsndfile: ") + sf_strerror(nullptr) + ")");
  DecodedAudio out;
  out.format = format_name(info.format);
  if (info.channels < 1 || info.channels > kMaxAudioChannels)
    bad(path, std::to_string(info.channels) + " channels (1 to " + std::to_string(kMaxAudioChannels) + " accepted)");
  if (info.samplerate < 1 || info.samplerate > kMaxAudioSampleRate)
    bad(path, "sample rate " + std::to_string(info.samplerate) + " Hz (1 to " + std::to_string(kMaxAudioSampleRate) +
                  " accepted)");
  if (info.frames < 0 || static_cast<double>(info.frames) / info.samplerate > max_seconds)
    bad(path, "declares " + std::to_string(static_cast<double>(info.frames) / info.samplerate) +
                  " s of audio; at most " + std::to_string(static_cast<int64_t>(max_seconds)) + " s accepted");
  if (info.frames * info.channels > kMaxDecodedValues)
    bad(path, "declares " + std::to_string(info.frames) + " frames of " + std::to_string(info.channels) +
                  " channels, more than " + std::to_string(kMaxDecodedValues) + " samples");
  out.channels = info.channels;
  out.sample_rate = info.samplerate;
  // MP3 streams without a Xing/LAME header only estimate their length; PCM, FLAC and OGG declare it.
  const bool estimated_length = (info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_MPEG;

  // Read in blocks: what is allocated follows what is really in the file, not the header's claim.
  constexpr sf_count_t kBlock = 16384;
  std::vector<float> block(static_cast<size_t>(kBlock * info.channels));
  for (;;) {
    const sf_count_t got = sf_readf_float(f.get(), block.data(), kBlock);
    if (got < 0) bad(path, std::string("read failed (libsndfile: ") + sf_strerror(f.get()) + ")");
    if (got == 0) break;
    if (out.frames + got > info.frames && info.frames > 0 && !estimated_length)
      bad(path, "holds more frames than its header declares");
    if ((out.frames + got) * info.channels > kMaxDecodedValues ||
        static_cast<double>(out.frames + got) / info.samplerate > max_seconds)
      bad(path, "more than " + std::to_string(static_cast<int64_t>(max_seconds)) + " s of audio");
    out.samples.insert(out.samples.end(), block.begin(), block.begin() + got * info.channels);
    out.frames += got;
  }
  if (sf_error(f.get()) != SF_ERR_NO_ERROR) bad(path, std::string("decoding failed (libsndfile: ") + sf_strerror(f.get()) + ")");
  if (out.frames == 0) bad(path, "holds no samples");
  if (out.frames < info.frames) {
    if (!estimated_length)
      bad(path, "truncated: " + std::to_string(out.frames) + " of " + std::to_string(info.frames) +
                    " declared frames could be read");
  }
  if (log_says_truncated(f.get())) bad(path, "truncated (its data chunk is longer than the file)");
  for (size_t i = 0; i < out.samples.size(); i++)
    if (!std::isfinite(out.samples[i]))
      bad(path, std::string(std::isnan(out.samples[i]) ? "NaN" : "infinite") + " sample at frame " +
                    std::to_string(i / static_cast<size_t>(out.channels)));
  return out;
}

std::vector<std::string> audio_formats_supported() {
  int count = 0;
  sf_command(nullptr, SFC_GET_FORMAT_MAJOR_COUNT, &count, sizeof(count));
  std::vector<std::string> names;
  for (int i = 0; i < count; i++) {
    SF_FORMAT_INFO fi{};
    fi.format = i;
    if (sf_command(nullptr, SFC_GET_FORMAT_MAJOR, &fi, sizeof(fi)) == 0 && fi.name) names.emplace_back(fi.name);
  }
  return names;
}

}  // namespace segpipe
