// Audio preprocessing against the reference: tests/data/media/goldens/audio_features.safetensors, made by
// tools/goldens/media/audio.py with transformers' WhisperFeatureExtractor configured and called as
// Qwen3-Omni's processor does (README-audio.md beside the script).
//
// Tolerances, and why:
// - mel filter bank: relative 1e-12. Same float64 formula in the same order; only the last bits of
//   log/exp may differ between libm builds.
// - features from the reference's own 16 kHz waveform vs the extractor's numpy path: max abs 1e-6.
//   Same operations in the same order (float64 FFT rounded to complex64, float64 power, mel and log10,
//   float32 floor and affine step); FFTW and pocketfft agree to ~1e-16 relative, which moves a float32
//   result (|x| < 2, ulp 1.2e-7 .. 2.4e-7) by at most a couple of ulps.
// - the same vs the processor's own output (its torch path, float32 STFT and mel product): max abs
//   2e-4. float32 FFT error is relative to the frame's energy, so it is largest in log terms for the
//   weakest bins (down to the max - 8 floor, 1e-8 of the peak power): that is where the two reference
//   paths differ from each other (audio_summary.json: numpy_vs_torch_max_abs), and we follow the numpy
//   path.
// - decoding: exact. libsndfile scales 16-bit PCM by 1/32768, as the golden's decoder does.
// - resampling (speech_22k, chord_44k_stereo): see ResampledFilesMatchTheReferencePipeline.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "media/audio/audio_decode.h"
#include "media/audio/audio_downmix.h"
#include "media/audio/audio_features.h"
#include "media/audio/audio_load.h"
#include "media/audio/audio_resample.h"
#include "media/audio/log_mel.h"
#include "media/audio/mel_filter_bank.h"
#include "segments/encoders/audio_lengths.h"
#include "tests/media/audio_golden_reader.h"

namespace segpipe {
namespace {

using namespace testing_audio;

constexpr double kMelFilterRel = 1e-12;
constexpr double kNumpyPathMaxAbs = 1e-6;
constexpr double kProcessorMaxAbs = 2e-4;

struct MediaFile {
  const char* stem;
  const char* file;
  bool resampled;
};
const MediaFile kFiles[] = {{"speech", "speech.wav", false},
                            {"tone", "tone.flac", false},
                            {"speech_22k", "speech_22k.wav", true},
                            {"chord_44k_stereo", "chord_44k_stereo.wav", true}};

const Golden& features_golden() {
  static const Golden g(goldens_dir() + "/audio_features.safetensors");
  return g;
}

LogMelParams qwen3_omni_params() {
  // Qwen3-Omni's preprocessor_config.json (the golden's metadata `feature_extractor` records them).
  LogMelParams p;
  p.sample_rate = 16000;
  p.n_fft = 400;
  p.hop_length = 160;
  p.n_mels = 128;
  return p;
}

std::string media(const std::string& file) { return source_path("tests/data/media/" + file); }

TEST(AudioFeatures, GoldenRecordsTheSettingsUsedHere) {
  const Golden& g = features_golden();
  ASSERT_TRUE(g.ok()) << "missing " << g.path() << " (tools/goldens/media/audio.py makes it)";
  EXPECT_EQ(g.meta("format"), "segpipe-golden/1");
  EXPECT_EQ(g.meta("source").rfind("transformers ", 0), 0u) << g.meta("source");
  const std::string fe = g.meta("feature_extractor");
  for (const char* kv : {"\"feature_size\": 128", "\"hop_length\": 160", "\"n_fft\": 400", "\"sampling_rate\": 16000"})
    EXPECT_NE(fe.find(kv), std::string::npos) << kv << " not in " << fe;
}

TEST(AudioFeatures, MelFilterBankEqualsTheReference) {
  const Golden& g = features_golden();
  ASSERT_TRUE(g.ok()) << "missing " << g.path();
  ASSERT_EQ(g.shape("mel_filters"), (std::vector<int64_t>{201, 128}));
  const std::vector<double> ours = slaney_mel_filter_bank(201, 128, 0.0, 8000.0, 16000);
  const Diff d = diff(ours, g.f64("mel_filters"));
  std::cout << "mel_filters: " << describe(d) << "\n";
  EXPECT_LE(d.max_abs, kMelFilterRel * d.ref_max) << describe(d);
}

TEST(AudioFeatures, FeaturesOfTheReferenceWaveform) {
  const Golden& g = features_golden();
  ASSERT_TRUE(g.ok()) << "missing " << g.path();
  for (const MediaFile& f : kFiles) {
    SCOPED_TRACE(f.stem);
    const std::string s = f.stem;
    ASSERT_TRUE(g.has(s + ".waveform")) << "golden lacks " << s << ".waveform";
    const std::vector<float> wave = g.f32(s + ".waveform");
    const LogMelFeatures ours = whisper_log_mel(wave.data(), static_cast<int64_t>(wave.size()), qwen3_omni_params(), s);
    ASSERT_EQ(g.shape(s + ".input_features"), (std::vector<int64_t>{128, ours.frames}));
    const std::vector<int64_t> length = g.i64(s + ".feature_length");
    EXPECT_EQ(length.at(0), ours.frames);
    const std::vector<int64_t> mask = g.i64(s + ".feature_attention_mask");
    EXPECT_EQ(static_cast<int64_t>(mask.size()), ours.frames);
    for (int64_t v : mask) EXPECT_EQ(v, 1);
    const Diff dp = diff(ours.data, g.f32(s + ".input_features"));
    std::cout << s << " vs processor (torch path): " << describe(dp) << "\n";
    EXPECT_LE(dp.max_abs, kProcessorMaxAbs) << describe(dp);
    if (g.has(s + ".input_features_numpy")) {
      const Diff dn = diff(ours.data, g.f32(s + ".input_features_numpy"));
      std::cout << s << " vs numpy path: " << describe(dn) << "\n";
      EXPECT_LE(dn.max_abs, kNumpyPathMaxAbs) << describe(dn);
    } else {
      ADD_FAILURE() << "golden lacks " << s << ".input_features_numpy";
    }
    // The processor's placeholder count for this clip (n_window 50, as the processor calls it).
    EXPECT_EQ(audio_placeholder_tokens(ours.frames), g.i64(s + ".audio_tokens").at(0));
  }
}

TEST(AudioFeatures, SixteenKilohertzFilesDecodeAndMatchEndToEnd) {
  const Golden& g = features_golden();
  ASSERT_TRUE(g.ok()) << "missing " << g.path();
  for (const MediaFile& f : kFiles) {
    if (f.resampled) continue;
    SCOPED_TRACE(f.file);
    const MonoAudio a = load_audio_mono(media(f.file), 16000);
    const std::vector<float> ref = g.f32(std::string(f.stem) + ".waveform");
    ASSERT_EQ(a.samples.size(), ref.size());
    EXPECT_EQ(a.samples, ref) << "decoded samples differ (libsndfile int16 / 32768 is exact)";
    const LogMelFeatures ours = audio_file_features(media(f.file), qwen3_omni_params());
    const Diff d = diff(ours.data, g.f32(std::string(f.stem) + ".input_features"));
    std::cout << f.stem << " file -> features vs processor: " << describe(d) << "\n";
    EXPECT_LE(d.max_abs, kProcessorMaxAbs) << describe(d);
  }
}

// Resampling. The reference pipeline (librosa.load) resamples with libsoxr's HQ recipe; the golden
// machine has no librosa, so audio.py used python-soxr at HQ when installed (the same engine: tight),
// else torchaudio's windowed-sinc resampler (another filter: its pass band ends at 0.99 * 8 kHz, soxr
// HQ's at about 0.91 * 8 kHz, so the bins near 8 kHz differ in level, and the log of a weak bin moves a
// lot). The tolerances per resampler:
//   waveform max abs: soxr_hq 1e-5 (float32 engines of one library), otherwise rel L2 3e-2;
//   features max abs: soxr_hq 1e-3, otherwise a mean abs of 2e-2 over all bins and frames.
TEST(AudioFeatures, ResampledFilesMatchTheReferencePipeline) {
  const Golden& g = features_golden();
  ASSERT_TRUE(g.ok()) << "missing " << g.path();
  for (const MediaFile& f : kFiles) {
    if (!f.resampled) continue;
    SCOPED_TRACE(f.file);
    const std::string s = f.stem;
    // Decoding and down-mixing: exact.
    const DecodedAudio dec = decode_audio_file(media(f.file));
    const std::vector<float> ref_dec = g.f32(s + ".decoded");
    ASSERT_EQ(g.shape(s + ".decoded"), (std::vector<int64_t>{dec.channels, dec.frames}));
    for (int c = 0; c < dec.channels; c++)
      for (int64_t t = 0; t < dec.frames; t++)
        ASSERT_EQ(dec.samples[static_cast<size_t>(t * dec.channels + c)], ref_dec[static_cast<size_t>(c * dec.frames + t)])
            << "channel " << c << " frame " << t;
    const std::vector<float> mono = downmix_mean(dec.samples.data(), dec.frames, dec.channels);
    EXPECT_EQ(mono, g.f32(s + ".decoded_mono"));

    const MonoAudio a = load_audio_mono(media(f.file), 16000);
    const std::vector<float> ref = g.f32(s + ".waveform");
    ASSERT_EQ(static_cast<int64_t>(a.samples.size()), resampled_length(dec.frames, dec.sample_rate, 16000));
    ASSERT_EQ(a.samples.size(), ref.size()) << "the reference resampled to another length";
    const bool soxr = g.has(s + ".waveform_soxr_hq");
    const Diff dw = diff(a.samples, soxr ? g.f32(s + ".waveform_soxr_hq") : ref);
    std::cout << s << " waveform vs " << (soxr ? "soxr_hq" : "the golden's resampler") << ": " << describe(dw) << "\n";
    if (soxr)
      EXPECT_LE(dw.max_abs, 1e-5) << describe(dw);
    else
      EXPECT_LE(dw.rel_l2, 3e-2) << describe(dw);
    const LogMelFeatures ours = whisper_log_mel(a.samples.data(), static_cast<int64_t>(a.samples.size()),
                                                qwen3_omni_params(), f.file);
    const std::vector<float> rf = g.f32(s + ".input_features");
    ASSERT_EQ(ours.data.size(), rf.size());
    const Diff df = diff(ours.data, rf);
    double mean_abs = 0;
    for (size_t i = 0; i < rf.size(); i++) mean_abs += std::fabs(static_cast<double>(ours.data[i]) - rf[i]);
    mean_abs /= static_cast<double>(rf.size());
    std::cout << s << " features vs processor: " << describe(df) << ", mean abs " << mean_abs << "\n";
    if (soxr)
      EXPECT_LE(df.max_abs, 1e-3) << describe(df);
    else
      EXPECT_LE(mean_abs, 2e-2) << describe(df);
    EXPECT_EQ(audio_placeholder_tokens(ours.frames), g.i64(s + ".audio_tokens").at(0));
  }
}

}  // namespace
}  // namespace segpipe
