// Config parsing (segments/model/config.h): the committed configs give the values they hold, both
// rotary spellings agree, and every unsupported or contradictory setting is an InputError naming the key.
#include <gtest/gtest.h>

#include <limits>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "segments/checkpoint/checkpoint.h"
#include "segments/model/config_file.h"
#include "segments/model/config.h"
#include "config_sizes.h"
#include "segments_test_support.h"

namespace segpipe {
namespace {

using nlohmann::json;
using testing::ConfigSizes;
using testing::expect_input_error;
using testing::sizes_of;

ModelConfig committed(const std::string& name) { return read_model_config(testing::model_dir(name)); }

TEST(ModelConfig, CommittedDenseConfig) {
  ModelConfig c = committed("tiny-qwen3-dense");
  EXPECT_EQ(c.arch, Arch::Qwen3);
  EXPECT_EQ(c.model_type, "qwen3");
  EXPECT_EQ(sizes_of(c), (ConfigSizes{.layers = 3, .hidden = 80, .heads = 5, .kv_heads = 5, .head_dim = 16, .vocab = 512}));
  EXPECT_EQ(c.intermediate, 192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope_theta, 1000000.0);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-6f);
  EXPECT_EQ(c.num_experts, 0);
  EXPECT_EQ(c.tensor_prefix, "model.");
  EXPECT_EQ(c.max_position, 2048);
  for (int i = 0; i < c.num_layers; i++) EXPECT_FALSE(c.is_moe_layer(i));
}

TEST(ModelConfig, CommittedMoeConfigWithLocalExpertsSpelling) {
  ModelConfig c = committed("tiny-qwen3-moe");
  EXPECT_EQ(c.arch, Arch::Qwen3Moe);
  EXPECT_EQ(sizes_of(c), (ConfigSizes{.layers = 5, .hidden = 96, .heads = 6, .kv_heads = 2, .head_dim = 32, .vocab = 1000}));
  EXPECT_EQ(c.num_experts, 8);  // num_local_experts
  EXPECT_EQ(c.top_k, 2);
  EXPECT_EQ(c.moe_intermediate, 48);
  EXPECT_EQ(c.intermediate, 160);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.mlp_only_layers, std::vector<int>{1});
  EXPECT_EQ(c.weight_dtype, "bfloat16");
  std::vector<bool> moe;
  for (int i = 0; i < c.num_layers; i++) moe.push_back(c.is_moe_layer(i));
  EXPECT_EQ(moe, (std::vector<bool>{true, false, true, true, true}));
}

TEST(ModelConfig, CommittedHubConfigWithTransformers4Spelling) {
  ModelConfig c = committed("tiny-qwen3-moe-hub");
  EXPECT_EQ(c.num_experts, 8);  // num_experts
  EXPECT_EQ(c.rope_theta, 50000.0);  // top-level rope_theta, rope_scaling null
  EXPECT_EQ(c.decoder_sparse_step, 2);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 24);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.weight_dtype, "bfloat16");  // torch_dtype
  std::vector<bool> moe;
  for (int i = 0; i < c.num_layers; i++) moe.push_back(c.is_moe_layer(i));
  EXPECT_EQ(moe, (std::vector<bool>{false, true, false, true}));
}

TEST(ModelConfig, CommittedF32Config) {
  ModelConfig c = committed("tiny-qwen3-moe-f32");
  EXPECT_EQ(c.num_experts, 16);
  EXPECT_EQ(c.top_k, 4);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.weight_dtype, "float32");
}

TEST(ModelConfig, CommittedOmniConfigReadsTheThinkerTextModel) {
  ModelConfig c = committed("tiny-qwen3-omni");
  EXPECT_EQ(c.arch, Arch::Qwen3OmniMoe);
  EXPECT_EQ(c.tensor_prefix, "thinker.model.");
  EXPECT_EQ(c.lm_head_name, "thinker.lm_head.weight");
  // thinker_config.text_config, not the talker's text_config (hidden 32, 4 experts)
  EXPECT_EQ(sizes_of(c), (ConfigSizes{.layers = 3, .hidden = 64, .heads = 4, .kv_heads = 2, .head_dim = 16, .vocab = 1200}));
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_EQ(c.moe_intermediate, 32);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.rope_theta, 200000.0);
  EXPECT_EQ(c.mrope_section, (std::vector<int>{4, 2, 2}));
  EXPECT_TRUE(c.mrope_interleaved);
  EXPECT_EQ(c.weight_dtype, "bfloat16");  // top-level torch_dtype; the text config's is null

  ModelConfig v5 = committed("tiny-qwen3-omni-v5");
  EXPECT_EQ(sizes_of(v5), (ConfigSizes{.layers = 3, .hidden = 48, .heads = 4, .kv_heads = 1, .head_dim = 24, .vocab = 900}));
  EXPECT_EQ(v5.num_experts, 6);
  EXPECT_EQ(v5.top_k, 3);
  EXPECT_EQ(v5.rope_theta, 1000000.0);
  EXPECT_EQ(v5.mrope_section, (std::vector<int>{4, 4, 4}));
  EXPECT_EQ(v5.mlp_only_layers, std::vector<int>{1});
  EXPECT_FALSE(v5.is_moe_layer(1));
  EXPECT_TRUE(v5.is_moe_layer(2));
}

// A minimal valid qwen3_moe config to mutate.
json base_moe() {
  return json::parse(R"({
    "model_type": "qwen3_moe", "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 100, "intermediate_size": 128,
    "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0
  })");
}

// The same, in the Omni layout (thinker_config.text_config).
json base_omni() {
  json tc = base_moe();
  tc.erase("model_type");
  tc["rope_scaling"] = {{"rope_type", "default"}, {"mrope_section", {4, 2, 2}}, {"interleaved", true}};
  return {{"model_type", "qwen3_omni_moe"}, {"thinker_config", {{"text_config", tc}}}};
}

ModelConfig parse(const json& j) { return parse_model_config(j, "cfg.json"); }

// `j` with the top-level keys of `changes` set to their values: a base config with the settings a test varies.
json with(json j, const json& changes) {
  j.update(changes);
  return j;
}

void expect_config_error(const json& j, std::initializer_list<std::string> keys) {
  std::vector<std::string> needles{"cfg.json"};
  expect_input_error([&] { parse(j); }, {"cfg.json"});
  for (const auto& k : keys) expect_input_error([&] { parse(j); }, {k});
}

TEST(ModelConfig, BaseConfigsParse) {
  EXPECT_NO_THROW(parse(base_moe()));
  EXPECT_NO_THROW(parse(base_omni()));
}

TEST(ModelConfig, BothRopeSpellingsGiveTheSameTheta) {
  json v4 = base_moe();
  v4["rope_theta"] = 123456.0;
  v4["rope_scaling"] = nullptr;
  json v5 = base_moe();
  v5.erase("rope_theta");
  v5["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 123456.0}};
  json both = v5;
  both["rope_theta"] = 123456.0;
  EXPECT_EQ(parse(v4).rope_theta, 123456.0);
  EXPECT_EQ(parse(v5).rope_theta, 123456.0);
  EXPECT_EQ(parse(both).rope_theta, 123456.0);
  // Neither spelling: transformers' default base.
  json none = base_moe();
  none.erase("rope_theta");
  EXPECT_EQ(parse(none).rope_theta, 10000.0);
  // Both spellings disagreeing is a contradiction.
  json bad = v5;
  bad["rope_theta"] = 5.0;
  expect_config_error(bad, {"rope_theta"});
}

// Values outside their meaningful range are refused, never replaced: rope_theta -5 used to become
// 10000 silently, and rms_norm_eps 1e300 became inf in float (every norm zero, token 0 forever).
TEST(ModelConfig, OutOfRangeValuesAreRefusedNotReplaced) {
  for (double t : {-5.0, 0.0, 1.0, std::numeric_limits<double>::infinity()}) {
    json j = base_moe();
    j["rope_theta"] = t;
    expect_config_error(j, {"rope_theta"});
    json p = base_moe();
    p.erase("rope_theta");
    p["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", t}};
    expect_config_error(p, {"rope_parameters.rope_theta"});
  }
  for (double e : {1e300, 0.0, -1e-6, 1e-50, 2.0}) {
    json j = base_moe();
    j["rms_norm_eps"] = e;
    expect_config_error(j, {"rms_norm_eps"});
  }
  json j = base_moe();
  j["rms_norm_eps"] = 1e-5;
  EXPECT_NO_THROW(parse(j));
  json h = base_moe();
  h["num_attention_heads"] = 1 << 20;
  h["num_key_value_heads"] = 1 << 20;
  h["head_dim"] = 1 << 12;
  expect_config_error(h, {"head_dim"});
}

// A key given twice in config.json is ambiguous (a JSON parser keeps one of them silently).
TEST(ModelConfig, DuplicateKeysInTheFileAreRefused) {
  testing::TempDir d;
  std::ofstream(d.path() / "config.json") << R"({"model_type": "qwen3", "rope_theta": 10000.0, "x": {"a": 1, "a": 2}})";
  expect_input_error([&] { read_json_file((d.path() / "config.json").string()); }, {"config.json", "duplicate key 'a'"});
  std::ofstream(d.path() / "config.json") << R"({"model_type": "qwen3", "rope_theta": 10000.0, "rope_theta": -5})";
  expect_input_error([&] { read_json_file((d.path() / "config.json").string()); }, {"config.json", "duplicate key 'rope_theta'"});
  std::ofstream(d.path() / "config.json") << R"({"a": {"k": 1}, "b": {"k": 2}, "k": [{"k": 1}, {"k": 2}]})";
  EXPECT_NO_THROW(read_json_file((d.path() / "config.json").string())) << "the same key in different objects is fine";
}

TEST(ModelConfig, MissingHiddenSize) {
  json j = base_moe();
  j.erase("hidden_size");
  expect_config_error(j, {"hidden_size"});
  json o = base_omni();
  o["thinker_config"]["text_config"].erase("hidden_size");
  expect_config_error(o, {"thinker_config.text_config.hidden_size"});
  json s = base_moe();
  s["hidden_size"] = "64";
  expect_config_error(s, {"hidden_size"});
  s["hidden_size"] = 0;
  expect_config_error(s, {"hidden_size"});
}

TEST(ModelConfig, UnknownOrMissingModelType) {
  json j = base_moe();
  j["model_type"] = "llama";
  expect_config_error(j, {"model_type", "llama"});
  j.erase("model_type");
  expect_config_error(j, {"model_type"});
  json o = base_omni();
  o.erase("thinker_config");
  expect_config_error(o, {"thinker_config"});
}

TEST(ModelConfig, SlidingWindowOn) {
  json j = base_moe();
  j["use_sliding_window"] = true;
  j["sliding_window"] = 4096;
  expect_config_error(j, {"use_sliding_window"});
  json l = base_moe();
  l["layer_types"] = {"full_attention", "sliding_attention", "full_attention", "full_attention"};
  expect_config_error(l, {"layer_types"});
  json off = base_moe();
  off["use_sliding_window"] = false;
  off["sliding_window"] = nullptr;
  EXPECT_NO_THROW(parse(off));
}

TEST(ModelConfig, AttentionBiasTrue) {
  json j = base_moe();
  j["attention_bias"] = true;
  expect_config_error(j, {"attention_bias"});
  json o = base_omni();
  o["thinker_config"]["text_config"]["attention_bias"] = true;
  expect_config_error(o, {"thinker_config.text_config.attention_bias"});
}

TEST(ModelConfig, RopeScalingYarn) {
  json j = base_moe();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32768}};
  expect_config_error(j, {"rope_scaling", "yarn"});
  json p = base_moe();
  p["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"rope_theta", 10000.0}};
  expect_config_error(p, {"rope_parameters", "yarn"});
  json l = base_moe();
  l["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  expect_config_error(l, {"rope_scaling", "linear"});
}

TEST(ModelConfig, SharedExperts) {
  expect_config_error(with(base_moe(), {{"shared_expert_intermediate_size", 64}}), {"shared_expert_intermediate_size"});
  EXPECT_NO_THROW(parse(with(base_moe(), {{"shared_expert_intermediate_size", 0}})));
}

// Qwen1.5-MoE-A2.7B's config.json as the hub serves it (transformers-4 spelling, no qkv_bias or head_dim key).
json qwen15_moe_hub() {
  return json::parse(R"({"architectures": ["Qwen2MoeForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "decoder_sparse_step": 1, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 5632, "max_position_embeddings": 8192, "max_window_layers": 21,
    "model_type": "qwen2_moe", "moe_intermediate_size": 1408, "norm_topk_prob": false, "num_attention_heads": 16,
    "num_experts": 60, "num_experts_per_tok": 4, "num_hidden_layers": 24, "num_key_value_heads": 16,
    "output_router_logits": false, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001,
    "shared_expert_intermediate_size": 5632, "sliding_window": 32768, "tie_word_embeddings": false,
    "torch_dtype": "bfloat16", "transformers_version": "4.39.0.dev0", "use_cache": true,
    "use_sliding_window": false, "vocab_size": 151936})");
}

TEST(ModelConfig, Qwen2MoeHubConfig) {
  ModelConfig c = parse(qwen15_moe_hub());
  EXPECT_EQ(c.arch, Arch::Qwen2Moe);
  EXPECT_EQ(c.head_dim, 128);  // hidden / heads: the file has no head_dim
  EXPECT_TRUE(c.qkv_bias);     // transformers' default where the key is absent
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.shared_expert_intermediate, 5632);
  EXPECT_EQ(c.num_experts, 60);
  EXPECT_EQ(c.top_k, 4);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.tensor_prefix, "model.");
  for (int i = 0; i < c.num_layers; i++) EXPECT_TRUE(c.is_moe_layer(i));
  json nb = qwen15_moe_hub();
  nb["qkv_bias"] = false;
  EXPECT_FALSE(parse(nb).qkv_bias);
}

TEST(ModelConfig, Qwen2MoeRefusals) {
  json j = qwen15_moe_hub();
  j.erase("shared_expert_intermediate_size");
  expect_config_error(j, {"shared_expert_intermediate_size"});
  expect_config_error(with(qwen15_moe_hub(), {{"use_sliding_window", true}}), {"use_sliding_window"});
  expect_config_error(with(qwen15_moe_hub(), {{"qkv_bias", "yes"}}), {"qkv_bias"});
}

TEST(ModelConfig, HeadsNotAMultipleOfKvHeads) {
  expect_config_error(with(base_moe(), {{"num_attention_heads", 6}, {"num_key_value_heads", 4}}), {"num_key_value_heads"});
}

TEST(ModelConfig, MoreExpertsPerTokenThanExperts) {
  expect_config_error(with(base_moe(), {{"num_experts_per_tok", 9}}), {"num_experts_per_tok"});
  EXPECT_NO_THROW(parse(with(base_moe(), {{"num_experts_per_tok", 8}})));
}

TEST(ModelConfig, ContradictoryExpertCounts) {
  expect_config_error(with(base_moe(), {{"num_local_experts", 16}}), {"num_local_experts"});
  EXPECT_EQ(parse(with(base_moe(), {{"num_local_experts", 8}})).num_experts, 8);
}

TEST(ModelConfig, ContradictoryDtypes) {
  expect_config_error(with(base_moe(), {{"dtype", "bfloat16"}, {"torch_dtype", "float32"}}), {"dtype"});
  EXPECT_EQ(parse(with(base_moe(), {{"dtype", "bfloat16"}, {"torch_dtype", "bfloat16"}})).weight_dtype, "bfloat16");
}

TEST(ModelConfig, MropeSectionMustSumToHalfTheHeadDim) {
  json o = base_omni();
  o["thinker_config"]["text_config"]["rope_scaling"]["mrope_section"] = {4, 2, 1};  // 7 != 16/2
  expect_config_error(o, {"mrope_section"});
  o["thinker_config"]["text_config"]["rope_scaling"]["mrope_section"] = {4, 4};
  EXPECT_NO_THROW(parse(o));
}

TEST(ModelConfig, OtherUnsupportedOrMalformedFields) {
  json j = base_moe();
  j["hidden_act"] = "gelu";
  expect_config_error(j, {"hidden_act"});
  json e = base_moe();
  e["num_experts"] = -1;
  expect_config_error(e, {"num_experts"});
  json m = base_moe();
  m["mlp_only_layers"] = {7};
  expect_config_error(m, {"mlp_only_layers"});
  json s = base_moe();
  s["decoder_sparse_step"] = 0;
  expect_config_error(s, {"decoder_sparse_step"});
  json h = base_moe();
  h.erase("head_dim");
  h["hidden_size"] = 66;  // not a multiple of 4 heads, and no head_dim
  expect_config_error(h, {"head_dim"});
  json d = base_moe();
  d["model_type"] = "qwen3";
  d.erase("intermediate_size");
  expect_config_error(d, {"intermediate_size"});
  expect_input_error([] { parse(json::array()); }, {"cfg.json"});
}

// transformers' rule (Qwen3MoeDecoderLayer): a layer is sparse when it is not listed in
// mlp_only_layers and num_experts > 0 and (layer_idx + 1) % decoder_sparse_step == 0.
bool reference_is_moe(int i, int experts, int step, const std::set<int>& mlp_only) {
  return !mlp_only.count(i) && experts > 0 && (i + 1) % step == 0;
}

TEST(ModelConfig, IsMoeLayerFollowsSparseStepAndMlpOnlyLayers) {
  for (int step : {1, 2, 3}) {
    for (const std::set<int>& only : {std::set<int>{}, std::set<int>{0, 5}, std::set<int>{1, 2, 3}}) {
      json j = base_moe();
      j["num_hidden_layers"] = 7;
      j["decoder_sparse_step"] = step;
      j["mlp_only_layers"] = std::vector<int>(only.begin(), only.end());
      ModelConfig c = parse(j);
      for (int i = 0; i < 7; i++)
        EXPECT_EQ(c.is_moe_layer(i), reference_is_moe(i, 8, step, only)) << "step " << step << " layer " << i;
    }
  }
  json dense = base_moe();
  dense["num_experts"] = 0;
  ModelConfig c = parse(dense);
  for (int i = 0; i < 4; i++) EXPECT_FALSE(c.is_moe_layer(i));
}

// Regression (found by these tests, fixed in 3b70836): a `hidden_act` that is not a string threw
// nlohmann's type_error instead of an InputError, so `segpipe` exited 3 instead of 2.
TEST(ModelConfig, NonStringHiddenActIsAnInputError) {
  json j = base_moe();
  j["hidden_act"] = 5;
  expect_input_error([&] { parse(j); }, {"cfg.json", "hidden_act"});
}


// Regression (fixed in 3b70836): mrope_section entries were narrowed to int and summed in int, so
// sections that overflow wrapped around to head_dim/2 and were accepted (signed overflow in a
// sanitizer build). 2147483647 + 2147483647 + 10 wraps to 8 = 16 / 2.
TEST(ModelConfig, MropeSectionSumOverflowIsRejected) {
  json o = base_omni();
  o["thinker_config"]["text_config"]["rope_scaling"]["mrope_section"] = {2147483647, 2147483647, 10};
  expect_input_error([&] { parse(o); }, {"mrope_section"});
}

// Regression (fixed in 3b70836): num_experts and intermediate_size were read as 64-bit integers and
// narrowed to int without a range check: 2^32 + 8 experts parsed as 8 experts.
TEST(ModelConfig, IntegersBeyondIntRangeAreRejected) {
  json e = base_moe();
  e["num_experts"] = 4294967304LL;  // 2^32 + 8
  expect_input_error([&] { parse(e); }, {"num_experts"});
  json i = base_moe();
  i["model_type"] = "qwen3";
  i["intermediate_size"] = 4294967424LL;  // 2^32 + 128
  expect_input_error([&] { parse(i); }, {"intermediate_size"});
}

}  // namespace
}  // namespace segpipe
