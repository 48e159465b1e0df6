// Synthetic checkpoints (segments/model/synthetic.h): a pure function of the seed, and every preset's
// config is one the parser accepts with the shapes its summary promises.
#include <gtest/gtest.h>

#include <set>

#include "segments/checkpoint/checkpoint.h"
#include "segments/model/config.h"
#include "segments/model/synthetic.h"
#include "segments/model/tensor_map.h"
#include "config_sizes.h"
#include "segments_test_support.h"

namespace segpipe {
namespace {

using testing::read_bytes;
using testing::TempDir;
namespace fs = std::filesystem;

std::map<std::string, std::string> folder_bytes(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (auto& e : fs::directory_iterator(dir)) out[e.path().filename().string()] = read_bytes(e.path().string());
  return out;
}

MakeModelOptions tiny(const std::string& preset, const TempDir& d, const std::string& sub, uint64_t seed) {
  MakeModelOptions o;
  o.preset = preset;
  o.out_dir = d.file(sub);
  o.seed = seed;
  return o;
}

TEST(SyntheticModel, SameSeedGivesIdenticalBytes) {
  TempDir d;
  for (const char* preset : {"tiny-qwen3", "tiny-qwen3-moe", "tiny-qwen3-omni"}) {
    make_synthetic_model(tiny(preset, d, std::string(preset) + "-a", 42));
    make_synthetic_model(tiny(preset, d, std::string(preset) + "-b", 42));
    auto a = folder_bytes(d.file(std::string(preset) + "-a")), b = folder_bytes(d.file(std::string(preset) + "-b"));
    ASSERT_FALSE(a.empty());
    EXPECT_TRUE(a.count("config.json") && a.count("model.safetensors")) << preset;
    EXPECT_TRUE(a == b) << preset << ": two runs with seed 42 differ";
  }
}

TEST(SyntheticModel, DifferentSeedGivesDifferentWeights) {
  TempDir d;
  make_synthetic_model(tiny("tiny-qwen3-moe", d, "s1", 1));
  make_synthetic_model(tiny("tiny-qwen3-moe", d, "s2", 2));
  auto a = folder_bytes(d.file("s1")), b = folder_bytes(d.file("s2"));
  EXPECT_EQ(a.at("config.json"), b.at("config.json"));
  EXPECT_NE(a.at("model.safetensors"), b.at("model.safetensors"));
  // Every weight tensor differs, not just some bytes of the file.
  auto ca = Checkpoint::open(d.file("s1")), cb = Checkpoint::open(d.file("s2"));
  for (const std::string& n : ca->tensor_names()) {
    TensorView va = ca->view(n), vb = cb->view(n);
    ASSERT_EQ(va.nbytes, vb.nbytes);
    EXPECT_NE(std::memcmp(va.data, vb.data, va.nbytes), 0) << n;
  }
}

TEST(SyntheticModel, CheckpointHoldsEveryRoleWithItsShape) {
  TempDir d;
  for (const char* preset : {"tiny-qwen3", "tiny-qwen3-moe", "tiny-qwen3-omni"}) {
    MakeModelOptions o = tiny(preset, d, preset, 3);
    make_synthetic_model(o);
    auto ck = Checkpoint::open(o.out_dir);
    ModelConfig c = parse_model_config(ck->config_json(), o.out_dir + "/config.json");
    auto roles = all_roles(*ck, c);
    EXPECT_NO_THROW(check_roles(*ck, roles)) << preset;
    EXPECT_NO_THROW(ck->validate_all()) << preset;
  }
}

TEST(SyntheticModel, ShardsAndDtypesFollowTheOptions) {
  TempDir d;
  MakeModelOptions o = tiny("tiny-qwen3-moe", d, "sharded", 5);
  o.max_shard_bytes = 200000;
  o.dtype = DType::F16;
  make_synthetic_model(o);
  auto ck = Checkpoint::open(o.out_dir);
  EXPECT_GT(ck->files().size(), 1u);
  EXPECT_TRUE(fs::exists(d.file("sharded/model.safetensors.index.json")));
  EXPECT_NO_THROW(ck->validate_all());
  for (const std::string& n : ck->tensor_names()) EXPECT_EQ(ck->entry(n).dtype, DType::F16) << n;
  // The same seed in another dtype holds the same values rounded: f32 -> f16 of the f32 file.
  MakeModelOptions f = tiny("tiny-qwen3-moe", d, "f32", 5);
  f.dtype = DType::F32;
  make_synthetic_model(f);
  auto cf = Checkpoint::open(f.out_dir);
  TensorView a = ck->view("model.layers.0.self_attn.q_proj.weight"), b = cf->view("model.layers.0.self_attn.q_proj.weight");
  for (int64_t i = 0; i < a.numel(); i++)
    ASSERT_EQ(static_cast<const uint16_t*>(a.data)[i], f32_to_f16(static_cast<const float*>(b.data)[i])) << i;
}

TEST(SyntheticModel, EveryPresetConfigParses) {
  auto presets = synthetic_presets();
  std::set<std::string> names;
  for (const PresetInfo& p : presets) {
    names.insert(p.name);
    MakeModelOptions o;
    o.preset = p.name;
    ModelConfig c;
    ASSERT_NO_THROW(c = parse_model_config(synthetic_config(o), p.name)) << p.name;
    EXPECT_GT(c.hidden, 0) << p.name;
    EXPECT_EQ(c.num_heads % c.num_kv_heads, 0) << p.name;
  }
  for (const char* n : {"tiny-qwen3", "tiny-qwen3-moe", "tiny-qwen3-omni", "demo-omni", "bench-moe", "qwen3-omni-30b-a3b-thinker"})
    EXPECT_TRUE(names.count(n)) << n;
  MakeModelOptions o;
  o.preset = "qwen3-omni-30b-a3b-thinker";
  // Published Qwen3-Omni-30B-A3B thinker text model: 48 layers, hidden 2048, 32 query / 4 kv heads
  // of 128, 128 experts top-8 of inner size 768, vocabulary 152064, M-RoPE sections 24/20/20.
  ModelConfig c = parse_model_config(synthetic_config(o), "thinker");
  EXPECT_EQ(c.arch, Arch::Qwen3OmniMoe);
  EXPECT_EQ(testing::sizes_of(c),
            (testing::ConfigSizes{.layers = 48, .hidden = 2048, .heads = 32, .kv_heads = 4, .head_dim = 128, .vocab = 152064}));
  EXPECT_EQ(c.num_experts, 128);
  EXPECT_EQ(c.top_k, 8);
  EXPECT_EQ(c.moe_intermediate, 768);
  EXPECT_EQ(c.mrope_section, (std::vector<int>{24, 20, 20}));
  o.preset = "tiny-qwen3-moe";
  c = parse_model_config(synthetic_config(o), "tiny");
  EXPECT_EQ(c.num_layers, 4);
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.top_k, 2);
  o.preset = "tiny-qwen3";
  c = parse_model_config(synthetic_config(o), "tiny");
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.num_experts, 0);
}

TEST(SyntheticModel, OverridesAndBadPresets) {
  MakeModelOptions o;
  o.preset = "tiny-qwen3-moe";
  o.num_layers = 3;
  o.num_experts = 6;
  o.top_k = 3;
  o.vocab_size = 77;
  ModelConfig c = parse_model_config(synthetic_config(o), "x");
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_experts, 6);
  EXPECT_EQ(c.top_k, 3);
  EXPECT_EQ(c.vocab, 77);
  o.top_k = 7;
  EXPECT_THROW(synthetic_config(o), InputError);
  MakeModelOptions bad;
  bad.preset = "no-such-preset";
  testing::expect_input_error([&] { synthetic_config(bad); }, {"no-such-preset"});
}

TEST(SyntheticModel, ValueIsAPureFunctionOfSeedNameAndIndex) {
  uint64_t h = synthetic_name_hash("model.layers.0.mlp.gate.weight");
  EXPECT_EQ(h, synthetic_name_hash("model.layers.0.mlp.gate.weight"));
  EXPECT_NE(h, synthetic_name_hash("model.layers.1.mlp.gate.weight"));
  for (uint64_t i = 0; i < 1000; i++) {
    float v = synthetic_value(9, h, i, 0.5f, 1.0f);
    EXPECT_EQ(v, synthetic_value(9, h, i, 0.5f, 1.0f));
    EXPECT_GE(v, 0.5f);
    EXPECT_LT(v, 1.5f);
  }
}

}  // namespace
}  // namespace segpipe
