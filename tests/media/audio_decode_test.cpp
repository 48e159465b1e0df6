// Decoding, down-mixing, resampling and the feature step on bad input: each failure must be an
// InputError whose one-line message names the file (the CLI turns it into exit 2). Also: the formats the
// installed libsndfile reads, round-tripped through files it writes (OGG, MP3) where it can write them.
#include <gtest/gtest.h>
#include <sndfile.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "media/audio/audio_decode.h"
#include "media/audio/audio_downmix.h"
#include "media/audio/audio_load.h"
#include "media/audio/audio_resample.h"
#include "media/audio/log_mel.h"
#include "segments/core/errors.h"

namespace segpipe {
namespace {

namespace fs = std::filesystem;

std::string media(const std::string& f) { return std::string(SEGPIPE_SOURCE_DIR) + "/tests/data/media/" + f; }

class AudioBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("segpipe_audio_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& bytes) {
    const std::string p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  static std::string slurp(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // The error a bad file must give: InputError, one line, naming the file and saying `what`.
  static void expect_input_error(const std::string& path, const std::string& what, double max_seconds = kMaxAudioSeconds) {
    try {
      decode_audio_file(path, max_seconds);
      ADD_FAILURE() << path << ": accepted";
    } catch (const InputError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(path), std::string::npos) << m;
      EXPECT_NE(m.find(what), std::string::npos) << "'" << what << "' not in: " << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  }
  // A file written by libsndfile itself from float samples.
  std::string write_sf(const std::string& name, int format, int rate, int channels, const std::vector<float>& data) {
    const std::string p = (dir_ / name).string();
    SF_INFO info{};
    info.samplerate = rate;
    info.channels = channels;
    info.format = format;
    SNDFILE* f = sf_open(p.c_str(), SFM_WRITE, &info);
    if (!f) return "";
    sf_writef_float(f, data.data(), static_cast<sf_count_t>(data.size() / static_cast<size_t>(channels)));
    sf_close(f);
    return p;
  }
  fs::path dir_;
};

TEST_F(AudioBadInput, MissingFile) { expect_input_error((dir_ / "nope.wav").string(), "no such file"); }

TEST_F(AudioBadInput, Directory) { expect_input_error(dir_.string(), "not a regular file"); }

TEST_F(AudioBadInput, EmptyFile) { expect_input_error(write("empty.wav", ""), "empty"); }

TEST_F(AudioBadInput, NotAudio) {
  expect_input_error(write("text.wav", "this is not a RIFF file, just text\n"), "not a readable audio file");
  std::string noise(4096, '\0');
  for (size_t i = 0; i < noise.size(); i++) noise[i] = static_cast<char>((i * 2654435761u) >> 13);
  expect_input_error(write("noise.flac", noise), "not a readable audio file");
}

TEST_F(AudioBadInput, UnsupportedContainer) {
  // A PNG is a real file of another kind.
  expect_input_error(write("image.wav", slurp(media("shapes.png"))), "not a readable audio file");
}

TEST_F(AudioBadInput, TruncatedWav) {
  const std::string full = slurp(media("speech.wav"));
  expect_input_error(write("cut.wav", full.substr(0, full.size() / 2)), "truncated");
}

TEST_F(AudioBadInput, TruncatedFlac) {
  const std::string full = slurp(media("tone.flac"));
  const std::string p = write("cut.flac", full.substr(0, full.size() / 2));
  try {
    decode_audio_file(p);
    ADD_FAILURE() << "accepted a FLAC cut in half";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST_F(AudioBadInput, HeaderOnlyWav) {
  const std::string full = slurp(media("speech.wav"));
  expect_input_error(write("header.wav", full.substr(0, 44)), "");
}

TEST_F(AudioBadInput, NaNAndInfiniteSamples) {
  std::vector<float> s(1600, 0.25f);
  s[700] = std::numeric_limits<float>::quiet_NaN();
  const std::string p = write_sf("nan.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, 1, s);
  ASSERT_FALSE(p.empty());
  expect_input_error(p, "NaN sample at frame 700");
  s[700] = std::numeric_limits<float>::infinity();
  const std::string q = write_sf("inf.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, 1, s);
  expect_input_error(q, "infinite sample at frame 700");
}

TEST_F(AudioBadInput, AbsurdLength) {
  // speech.wav is 1.74 s: with a 1 s limit it is refused from its header, before decoding.
  expect_input_error(media("speech.wav"), "at most 1 s", 1.0);
  // A WAV header declaring 2^31 bytes of 8 kHz audio (37 hours) on a 1 kB file.
  std::string h = slurp(media("speech.wav")).substr(0, 1068);
  auto put32 = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; i++) h[at + static_cast<size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
  };
  put32(4, 0x7fffffffu);
  put32(24, 8000);        // sample rate
  put32(28, 16000);       // byte rate
  put32(40, 0x7fffffd0u);  // data chunk size
  const std::string p = write("huge.wav", h);
  try {
    decode_audio_file(p);
    ADD_FAILURE() << "accepted a header declaring 37 hours";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(p), std::string::npos) << m;
    EXPECT_TRUE(m.find("at most") != std::string::npos || m.find("truncated") != std::string::npos) << m;
  }
}

TEST_F(AudioBadInput, TooShortForFeatures) {
  std::vector<float> s(200, 0.1f);  // n_fft / 2 samples: torch.stft's reflect padding refuses it too
  LogMelParams p;
  EXPECT_THROW(whisper_log_mel(s.data(), 200, p, "short.wav"), InputError);
  s.resize(201);
  EXPECT_NO_THROW(whisper_log_mel(s.data(), 201, p, "ok.wav"));
  s[10] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(whisper_log_mel(s.data(), 201, p, "nan.wav"), InputError);
}

TEST(AudioDecode, ReadsTheCommittedFiles) {
  const DecodedAudio a = decode_audio_file(media("speech.wav"));
  EXPECT_EQ(a.sample_rate, 16000);
  EXPECT_EQ(a.channels, 1);
  const DecodedAudio b = decode_audio_file(media("chord_44k_stereo.wav"));
  EXPECT_EQ(b.sample_rate, 44100);
  EXPECT_EQ(b.channels, 2);
  const DecodedAudio c = decode_audio_file(media("tone.flac"));
  EXPECT_NE(c.format.find("FLAC"), std::string::npos) << c.format;
}

TEST(AudioDecode, DownmixIsTheChannelMean) {
  const float s[] = {0.5f, -0.25f, 1.0f, 0.0f, -1.0f, 0.75f};
  const std::vector<float> m = downmix_mean(s, 2, 3);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0], (0.5f + -0.25f + 1.0f) / 3.0f);
  EXPECT_EQ(m[1], (0.0f + -1.0f + 0.75f) / 3.0f);
}

TEST(AudioDecode, ResampledLengthIsLibrosasCeiling) {
  // ceil(n * out / in): an exact ratio gives it exactly, anything else rounds up.
  EXPECT_EQ(resampled_length(441, 44100, 16000), 160);
  EXPECT_EQ(resampled_length(442, 44100, 16000), 161);
  EXPECT_EQ(resampled_length(1, 44100, 16000), 1);
  const std::vector<float> x(441, 0.5f);
  EXPECT_EQ(resample_soxr_hq(x.data(), 441, 44100, 16000, "x").size(), 160u);
}

// OGG Vorbis and MP3, written by the installed libsndfile and read back: where it cannot write one,
// the test says so and skips that format.
TEST_F(AudioBadInput, CompressedFormatsRoundTrip) {
  std::vector<float> tone(16000);
  for (size_t i = 0; i < tone.size(); i++) tone[i] = 0.5f * static_cast<float>(std::sin(2 * M_PI * 440.0 * i / 16000.0));
  struct Fmt {
    const char* name;
    int format;
  };
  int done = 0;
  for (const Fmt& f : {Fmt{"x.ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS}, Fmt{"x.mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III}}) {
    SF_INFO probe{};
    probe.samplerate = 16000;
    probe.channels = 1;
    probe.format = f.format;
    if (!sf_format_check(&probe)) {
      std::cout << f.name << ": this libsndfile cannot write it; not tested\n";
      continue;
    }
    const std::string p = write_sf(f.name, f.format, 16000, 1, tone);
    ASSERT_FALSE(p.empty()) << f.name;
    const MonoAudio a = load_audio_mono(p, 16000);
    // Lossy codecs: the length within an encoder frame, the level within 10 %.
    EXPECT_NEAR(static_cast<double>(a.samples.size()), 16000.0, 2400.0) << f.name;
    double rms = 0;
    for (float v : a.samples) rms += static_cast<double>(v) * v;
    rms = std::sqrt(rms / static_cast<double>(a.samples.size()));
    EXPECT_NEAR(rms, 0.5 / std::sqrt(2.0), 0.05) << f.name;
    done++;
  }
  std::cout << done << " compressed formats round-tripped\n";
}

}  // namespace
}  // namespace segpipe
