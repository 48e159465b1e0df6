// The audio tower against transformers: tests/data/media/goldens/<checkpoint>/audio_encoder_<stem>_<case>
// .safetensors (tools/goldens/media/audio.py; cases explained in README-audio.md), every boundary the
// golden holds, first divergence first.
//
// Tolerances: the reference computes in float32 with its own summation orders (oneDNN / MKL
// convolutions and GEMMs, vectorised softmax and LayerNorm); ours are fixed-order float32 dot products
// with some reductions in double. Both are within a few float32 ulps of the exact value per operation,
// and the tower is shallow (three convolutions, one or a few layers), so every boundary agrees to a
// relative L2 error of 1e-5 and a max abs error of 1e-5 * max(1, max |ref|). A wrong operation (a
// missing bias, GELU tanh instead of erf, a wrong window, a mis-ordered flatten) moves them by 1e-3 or
// more.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/encoders/audio_config.h"
#include "segments/encoders/audio_encoder.h"
#include "segments/encoders/audio_lengths.h"
#include "segments/kernels/cpu/thread_pool.h"
#include "tests/media/audio_golden_reader.h"

namespace segpipe {
namespace {

using namespace testing_audio;

constexpr double kRelL2 = 1e-5;
constexpr double kMaxAbsPerUnit = 1e-5;

struct Case {
  const char* checkpoint;
  const char* stem;
  const char* name;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.checkpoint << "/" << c.stem << "/" << c.name; }

std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (const char* ck : {"tiny-qwen3-omni", "tiny-qwen3-omni-v5"})
    for (const char* stem : {"speech", "tone"})
      for (const char* c : {"clip15", "nw50"}) out.push_back({ck, stem, c});
  return out;
}

std::string golden_path(const Case& c) {
  return goldens_dir() + "/" + c.checkpoint + "/audio_encoder_" + c.stem + "_" + c.name + ".safetensors";
}

AudioEncoderConfig config_of(Checkpoint& ck) {
  return parse_audio_encoder_config(ck.config_json(), ck.dir() + "/config.json");
}

// The golden's runtime settings (n_window, n_window_infer: the `nw50` case overrides them; no weight
// depends on them), checked to be the only difference from the checkpoint's config.
AudioEncoderConfig config_for(Checkpoint& ck, const Golden& g) {
  AudioEncoderConfig c = config_of(ck);
  EXPECT_EQ(std::to_string(c.num_mel_bins), g.meta("num_mel_bins"));
  c.n_window = std::stoi(g.meta("n_window"));
  c.n_window_infer = std::stoi(g.meta("n_window_infer"));
  return c;
}

class AudioEncoderGolden : public ::testing::TestWithParam<Case> {};

TEST_P(AudioEncoderGolden, EveryBoundaryMatches) {
  const Case& c = GetParam();
  const Golden g(golden_path(c));
  ASSERT_TRUE(g.ok()) << "missing " << g.path() << " (tools/goldens/media/audio.py makes it)";
  EXPECT_EQ(g.meta("format"), "segpipe-golden/1");
  EXPECT_EQ(g.meta("source").rfind("transformers ", 0), 0u) << g.meta("source");
  auto ck = Checkpoint::open(source_path(std::string("models/") + c.checkpoint));
  const AudioEncoderConfig cfg = config_for(*ck, g);
  const AudioEncoder enc(*ck, cfg);

  const std::vector<int64_t> fshape = g.shape("input_features");
  ASSERT_EQ(fshape.size(), 2u);
  ASSERT_EQ(fshape[0], cfg.num_mel_bins);
  const int64_t T = fshape[1];
  EXPECT_EQ(g.i64("feature_lens").at(0), T);
  const std::vector<float> feats = g.f32("input_features");

  // Token counts: ours, the reference's placeholder formula, and what its tower produced.
  const std::vector<int64_t> out_shape = g.shape("output");
  EXPECT_EQ(enc.tokens(T), out_shape.at(0));
  EXPECT_EQ(audio_placeholder_tokens(T, cfg.n_window), g.i64("audio_tokens").at(0));
  EXPECT_EQ(enc.window_offsets(T), g.i64("cu_seqlens"));

  ThreadPool pool(2);
  std::map<std::string, std::pair<std::vector<float>, std::vector<int64_t>>> seen;
  const std::vector<float> out = enc.forward(feats.data(), T, pool, [&](const std::string& name, const float* data,
                                                                      const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    seen[name] = {std::vector<float>(data, data + n), shape};
  });
  std::vector<std::string> order = {"conv2d1", "conv2d2", "conv2d3", "conv_out", "encoder_input"};
  for (int i = 0; i < cfg.encoder_layers; i++) order.push_back("layers." + std::to_string(i) + ".output");
  for (const char* n : {"ln_post", "proj1", "output"}) order.push_back(n);
  for (const std::string& name : order) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(g.has(name)) << g.path() << " lacks " << name;
    ASSERT_TRUE(seen.count(name)) << "the encoder did not report " << name;
    ASSERT_EQ(seen[name].second, g.shape(name));
    const Diff d = diff(seen[name].first, g.f32(name));
    std::cout << c.checkpoint << " " << c.stem << " " << c.name << " " << name << ": " << describe(d) << "\n";
    // First divergence first: stop at the first boundary that fails.
    ASSERT_LE(d.rel_l2, kRelL2) << describe(d);
    ASSERT_LE(d.max_abs, kMaxAbsPerUnit * std::max(1.0, d.ref_max)) << describe(d);
  }
  EXPECT_EQ(out, seen["output"].first);
}

INSTANTIATE_TEST_SUITE_P(Goldens, AudioEncoderGolden, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           std::string s = std::string(i.param.checkpoint) + "_" + i.param.stem + "_" + i.param.name;
                           for (char& ch : s)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// The checkpoint's own config (n_window 8) on a whole file: the reference's placeholder count (13 per
// full chunk) disagrees with its own conv output and transformers fails (audio_summary.json records
// its error for the `asis` cases); we refuse it with the reason, naming config.json and the key.
TEST(AudioEncoder, RefusesWhatTheReferenceCannotEncode) {
  auto ck = Checkpoint::open(source_path("models/tiny-qwen3-omni"));
  const AudioEncoderConfig cfg = config_of(*ck);
  ASSERT_EQ(cfg.n_window, 8);
  const AudioEncoder enc(*ck, cfg);
  ThreadPool pool(1);
  const int64_t T = 2 * cfg.n_window;  // one full chunk
  std::vector<float> feats(static_cast<size_t>(cfg.num_mel_bins * T), 0.1f);
  try {
    enc.forward(feats.data(), T, pool);
    ADD_FAILURE() << "encoded " << T << " frames with n_window 8";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("config.json: thinker_config.audio_config.n_window"), std::string::npos) << m;
  }
  EXPECT_NO_THROW(enc.forward(feats.data(), T - 1, pool));
  // What the golden run saw from transformers on the same config.
  std::ifstream in(goldens_dir() + "/audio_summary.json");
  ASSERT_TRUE(in.good()) << "missing " << goldens_dir() << "/audio_summary.json";
  const nlohmann::json s = nlohmann::json::parse(in);
  for (const char* key : {"tiny-qwen3-omni/speech/asis", "tiny-qwen3-omni-v5/tone/asis"}) {
    ASSERT_TRUE(s["encoders"].contains(key)) << key;
    EXPECT_TRUE(s["encoders"][key].contains("reference_failed"))
        << key << ": transformers encoded it; this refusal is then wrong: " << s["encoders"][key].dump();
  }
}

// Thread count does not change a bit of the output (fixed reduction orders).
TEST(AudioEncoder, ThreadCountIndependent) {
  auto ck = Checkpoint::open(source_path("models/tiny-qwen3-omni-v5"));
  AudioEncoderConfig cfg = config_of(*ck);
  cfg.n_window = 50;
  cfg.n_window_infer = 100;
  const AudioEncoder enc(*ck, cfg);
  const int64_t T = 257;  // 2 full chunks, a tail of 57 frames, 3 windows
  std::vector<float> feats(static_cast<size_t>(cfg.num_mel_bins * T));
  for (size_t i = 0; i < feats.size(); i++) feats[i] = static_cast<float>(((i * 7919) % 1000) / 500.0 - 1.0);
  ThreadPool one(1), two(2);
  EXPECT_EQ(enc.forward(feats.data(), T, one), enc.forward(feats.data(), T, two));
}

TEST(AudioEncoder, MissingOrMisshapenTensorNamed) {
  auto ck = Checkpoint::open(source_path("models/tiny-qwen3-omni"));
  AudioEncoderConfig cfg = config_of(*ck);
  cfg.encoder_ffn_dim += 1;
  try {
    AudioEncoder enc(*ck, cfg);
    ADD_FAILURE() << "accepted fc1 of the wrong shape";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("thinker.audio_tower.layers.0.fc1.weight"), std::string::npos) << e.what();
  }
  cfg = config_of(*ck);
  cfg.encoder_layers = 2;
  try {
    AudioEncoder enc(*ck, cfg);
    ADD_FAILURE() << "accepted a missing layer";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("thinker.audio_tower.layers.1."), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace segpipe
