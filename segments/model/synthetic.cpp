#include "segments/model/synthetic.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "segments/checkpoint/safetensors_writer.h"
#include "segments/core/errors.h"
#include "segments/model/tensor_map.h"

namespace segpipe {

namespace fs = std::filesystem;
using nlohmann::json;

uint64_t synthetic_name_hash(const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : name) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

float synthetic_value(uint64_t seed, uint64_t name_hash, uint64_t index, float scale, float offset) {
  // splitmix64 of (seed, name, index): the same formula runs on any backend.
  uint64_t z = seed * 0xD1B54A32D192ED03ull ^ name_hash ^ (index * 0x9E3779B97F4A7C15ull);
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // [0, 1), 24 bits
  return offset + (2.0f * u - 1.0f) * scale;
}

namespace {

struct Shape {
  int hidden, layers, heads, kv_heads, head_dim, vocab, intermediate;
  int experts, top_k, moe_intermediate;
  std::string type;  // qwen3, qwen3_moe, qwen3_omni_moe
  bool tie;
  double theta;
  std::vector<int> mrope;
  int shared_expert = 0;  // qwen2_moe: the shared expert's inner size
};

Shape preset_shape(const std::string& p) {
  if (p == "tiny-qwen3") return {64, 2, 4, 2, 16, 512, 128, 0, 0, 0, "qwen3", true, 10000.0, {}};
  if (p == "tiny-qwen3-moe") return {64, 4, 4, 2, 16, 512, 128, 8, 2, 32, "qwen3_moe", false, 1e6, {}};
  if (p == "tiny-qwen3-omni") return {64, 4, 4, 2, 16, 512, 128, 16, 4, 32, "qwen3_omni_moe", false, 1e6, {2, 3, 3}};
  // The built-in demo: the Omni layout with the real vocabulary, so the real tokenizer drives it.
  if (p == "demo-omni") return {128, 6, 8, 2, 32, 152064, 256, 32, 4, 64, "qwen3_omni_moe", false, 1e6, {6, 5, 5}};
  if (p == "tiny-qwen2-moe") return {64, 4, 4, 4, 16, 512, 128, 8, 4, 32, "qwen2_moe", false, 1e6, {}, 96};
  if (p == "qwen1.5-moe-a2.7b")
    return {2048, 24, 16, 16, 128, 151936, 5632, 60, 4, 1408, "qwen2_moe", false, 1e6, {}, 5632};
  if (p == "bench-moe") return {1024, 12, 16, 4, 64, 32000, 2816, 32, 4, 512, "qwen3_moe", false, 1e6, {}};
  if (p == "qwen3-omni-30b-a3b-thinker")
    return {2048, 48, 32, 4, 128, 152064, 768, 128, 8, 768, "qwen3_omni_moe", false, 1e6, {24, 20, 20}};
  throw InputError("make-model: --preset: unknown preset '" + p + "' (see segpipe make-model --help)");
}

json text_config(const Shape& s, const std::string& dtype) {
  json c = {{"hidden_size", s.hidden},
            {"num_hidden_layers", s.layers},
            {"num_attention_heads", s.heads},
            {"num_key_value_heads", s.kv_heads},
            {"head_dim", s.head_dim},
            {"vocab_size", s.vocab},
            {"intermediate_size", s.intermediate},
            {"hidden_act", "silu"},
            {"rms_norm_eps", 1e-6},
            {"max_position_embeddings", 32768},
            {"attention_bias", false},
            {"attention_dropout", 0.0},
            {"tie_word_embeddings", s.tie},
            {"dtype", dtype}};
  json rope = {{"rope_type", "default"}, {"rope_theta", s.theta}};
  if (!s.mrope.empty()) {
    rope["mrope_section"] = s.mrope;
    rope["interleaved"] = true;
  }
  c["rope_parameters"] = rope;
  if (s.type == "qwen2_moe") {  // as Qwen2MoeConfig writes it: no head_dim or attention_bias key, q/k/v biases
    c.erase("head_dim");
    c.erase("attention_bias");
    c["qkv_bias"] = true;
    c["use_sliding_window"] = false;
    c["shared_expert_intermediate_size"] = s.shared_expert;
  }
  if (s.experts > 0) {
    c["num_experts"] = s.experts;
    c["num_experts_per_tok"] = s.top_k;
    c["moe_intermediate_size"] = s.moe_intermediate;
    c["decoder_sparse_step"] = 1;
    c["mlp_only_layers"] = json::array();
    c["norm_topk_prob"] = s.type != "qwen2_moe";
    c["router_aux_loss_coef"] = 0.001;
  }
  return c;
}

const char* hf_dtype(DType t) { return t == DType::BF16 ? "bfloat16" : t == DType::F16 ? "float16" : "float32"; }

// Small stand-ins for the parts of a real Omni checkpoint the text model ignores (inspect lists them).
std::vector<TensorSpec> omni_other_parts(DType dt) {
  return {{"thinker.audio_tower.conv2d1.weight", dt, {8, 1, 3, 3}},
          {"thinker.audio_tower.proj1.weight", dt, {16, 8}},
          {"thinker.visual.patch_embed.proj.weight", dt, {16, 3, 2, 4, 4}},
          {"thinker.visual.merger.mlp.0.weight", dt, {16, 16}},
          {"talker.model.embed_tokens.weight", dt, {32, 16}},
          {"talker.codec_head.weight", dt, {32, 16}},
          {"code2wav.code_embedding.weight", dt, {32, 16}},
          {"code2wav.decoder.0.conv.weight", dt, {16, 16, 3}}};
}

}  // namespace

std::vector<PresetInfo> synthetic_presets() {
  return {{"tiny-qwen3", "dense qwen3, 2 layers, tied embeddings (tests)"},
          {"tiny-qwen3-moe", "qwen3_moe, 4 layers, 8 experts top-2 (tests)"},
          {"tiny-qwen3-omni", "qwen3_omni_moe layout, 4 layers, 16 experts top-4 (tests)"},
          {"tiny-qwen2-moe", "qwen2_moe, 4 layers, 8 experts top-4 beside a shared expert, q/k/v biases (tests)"},
          {"qwen1.5-moe-a2.7b", "qwen2_moe with Qwen1.5-MoE-A2.7B's shapes: 24 layers, 60 experts top-4 + shared (~29 GB)"},
          {"demo-omni", "qwen3_omni_moe layout with the real 152064-token vocabulary (the built-in demo)"},
          {"bench-moe", "qwen3_moe, 12 layers, hidden 1024, 32 experts top-4: ~1.4 GB in bf16 (benchmarks)"},
          {"qwen3-omni-30b-a3b-thinker", "the real thinker shapes: 48 layers, hidden 2048, 128 experts top-8 (~61 GB)"}};
}

json synthetic_config(const MakeModelOptions& o) {
  Shape s = preset_shape(o.preset);
  if (o.num_layers) s.layers = *o.num_layers;
  if (o.num_experts) s.experts = *o.num_experts;
  if (o.top_k) s.top_k = *o.top_k;
  if (o.vocab_size) s.vocab = *o.vocab_size;
  if (s.layers <= 0 || s.vocab <= 0 || (s.experts > 0 && (s.top_k <= 0 || s.top_k > s.experts)))
    throw InputError("make-model: overrides give an invalid shape (layers, vocab, experts, top-k)");
  if (s.type == "qwen3" && o.num_experts) throw InputError("make-model: --num-experts: preset '" + o.preset + "' is dense");
  std::string dt = hf_dtype(o.dtype);
  json tc = text_config(s, dt);
  if (s.type != "qwen3_omni_moe") {
    tc["model_type"] = s.type;
    tc["architectures"] = {s.type == "qwen3"       ? "Qwen3ForCausalLM"
                           : s.type == "qwen2_moe" ? "Qwen2MoeForCausalLM"
                                                   : "Qwen3MoeForCausalLM"};
    return tc;
  }
  tc["model_type"] = "qwen3_omni_moe_text";
  json thinker = {{"model_type", "qwen3_omni_moe_thinker"},
                  {"text_config", tc},
                  {"audio_config", {{"model_type", "qwen3_omni_moe_audio_encoder"}, {"d_model", 16}}},
                  {"vision_config", {{"model_type", "qwen3_omni_moe_vision_encoder"}, {"hidden_size", 16}}},
                  {"dtype", dt}};
  return {{"model_type", "qwen3_omni_moe"},
          {"architectures", {"Qwen3OmniMoeForConditionalGeneration"}},
          {"thinker_config", thinker},
          {"talker_config", {{"model_type", "qwen3_omni_moe_talker"}, {"spatial_merge_size", 2}}},
          {"code2wav_config", {{"model_type", "qwen3_omni_moe_code2wav"}}},
          {"enable_audio_output", true},
          {"dtype", dt}};
}

namespace {

void copy_tokenizer(const MakeModelOptions& o) {
  if (o.tokenizer.empty()) return;
  fs::path src = o.tokenizer;
  if (fs::is_directory(src)) {
    for (auto f : {"tokenizer.json", "tokenizer_config.json"})
      if (fs::exists(src / f)) fs::copy_file(src / f, fs::path(o.out_dir) / f, fs::copy_options::overwrite_existing);
  } else {
    fs::copy_file(src, fs::path(o.out_dir) / "tokenizer.json", fs::copy_options::overwrite_existing);
  }
}

}  // namespace

uint64_t make_synthetic_model(const MakeModelOptions& o) {
  json cj = synthetic_config(o);
  ModelConfig cfg = parse_model_config(cj, o.out_dir + "/config.json");
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) throw InputError(o.out_dir + ": cannot create (" + ec.message() + ")");
  std::ofstream(fs::path(o.out_dir) / "config.json") << cj.dump(2) << "\n";
  json gen = {{"do_sample", false}, {"eos_token_id", {151645, 151643}}, {"pad_token_id", 151643}};
  if (cfg.vocab < 151646) gen = {{"do_sample", false}};
  std::ofstream(fs::path(o.out_dir) / "generation_config.json") << gen.dump(2) << "\n";

  // Tensors in the order the roles table lists them (per-expert layout, as save_pretrained writes).
  std::vector<TensorSpec> specs;
  std::map<std::string, std::pair<float, float>> dist;  // name -> (scale, offset)
  auto add = [&](const TensorRole& r) {
    specs.push_back({r.name, o.dtype, r.shape});
    float fan_in = static_cast<float>(r.shape.back());
    float scale = std::sqrt(3.0f / fan_in), offset = 0.f;
    if (r.role.size() > 5 && r.role.compare(r.role.size() - 5, 5, "_bias") == 0) {
      scale = 0.5f;  // q/k/v biases: around 0
    } else if (r.shape.size() == 1) {
      scale = 0.1f;  // norms: around 1
      offset = 1.0f;
    } else if (r.role == "embed_tokens") {
      scale = 1.0f;
    } else if (r.role == "router") {
      scale *= 4.0f;  // decisive routing
    } else if (r.role == "lm_head") {
      scale *= 2.0f;
    }
    dist[r.name] = {scale, offset};
  };
  add(embed_role(cfg));
  for (int i = 0; i < cfg.num_layers; i++) {
    for (auto& r : layer_roles(cfg, i)) add(r);
    if (cfg.is_moe_layer(i))
      for (int e = 0; e < cfg.num_experts; e++)
        for (auto& r : expert_roles(cfg, i, e, ExpertLayout::PerExpert)) add(r);
  }
  for (auto& r : lm_head_roles(cfg)) add(r);
  if (cfg.arch == Arch::Qwen3OmniMoe)
    for (auto& t : omni_other_parts(o.dtype)) {
      specs.push_back(t);
      dist[t.name] = {0.1f, 0.f};
    }

  TensorFiller fill = [&](const TensorSpec& t, uint64_t first, uint64_t count, void* out) {
    auto [scale, offset] = dist.at(t.name);
    uint64_t h = synthetic_name_hash(t.name);
    for (uint64_t i = 0; i < count; i++) {
      float v = synthetic_value(o.seed, h, first + i, scale, offset);
      if (t.dtype == DType::BF16)
        static_cast<uint16_t*>(out)[i] = f32_to_bf16(v);
      else if (t.dtype == DType::F16)
        static_cast<uint16_t*>(out)[i] = f32_to_f16(v);
      else
        static_cast<float*>(out)[i] = v;
    }
  };
  if (o.formula_only) {
    if (o.dtype != DType::BF16) throw InputError("make-model: --weights formula stands for bf16 weights only");
    uint64_t total = 0;
    for (auto& t : specs) total += t.nbytes();
    std::ofstream(fs::path(o.out_dir) / kFormulaWeightsFile)
        << json{{"format", "segpipe-synthetic-weights"}, {"version", 1}, {"seed", o.seed}, {"dtype", "bfloat16"}}.dump(2)
        << "\n";
    copy_tokenizer(o);
    return total;
  }
  // Shards of at most max_shard_bytes, in order; an index when there is more than one.
  std::vector<std::vector<TensorSpec>> shards(1);
  uint64_t cur = 0, total = 0;
  for (auto& t : specs) {
    if (cur > 0 && cur + t.nbytes() > o.max_shard_bytes) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(t);
    cur += t.nbytes();
    total += t.nbytes();
  }
  std::map<std::string, std::string> meta = {{"format", "pt"}};
  if (shards.size() == 1) {
    write_safetensors((fs::path(o.out_dir) / "model.safetensors").string(), shards[0], meta, fill);
  } else {
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", json::object()}};
    for (size_t i = 0; i < shards.size(); i++) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      write_safetensors((fs::path(o.out_dir) / name).string(), shards[i], meta, fill);
      for (auto& t : shards[i]) index["weight_map"][t.name] = name;
    }
    std::ofstream(fs::path(o.out_dir) / "model.safetensors.index.json") << index.dump(2) << "\n";
  }
  copy_tokenizer(o);
  return total;
}

std::optional<FormulaWeights> read_formula_weights(const std::string& model_dir) {
  const fs::path p = fs::path(model_dir) / kFormulaWeightsFile;
  std::error_code ec;
  if (!fs::exists(p, ec)) return std::nullopt;
  const std::string where = p.string();
  if (!fs::is_regular_file(p, ec)) throw InputError(where + ": not a regular file");
  std::ifstream in(p);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) throw InputError(where + ": cannot read");
  if (text.size() > 4096) throw InputError(where + ": " + std::to_string(text.size()) + " bytes, expected a small JSON object");
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw InputError(where + ": not a JSON object");
  for (auto& [k, v] : j.items())
    if (k != "format" && k != "version" && k != "seed" && k != "dtype") throw InputError(where + ": unknown key '" + k + "'");
  if (!j.contains("format") || j["format"] != "segpipe-synthetic-weights")
    throw InputError(where + ": 'format' must be \"segpipe-synthetic-weights\"");
  if (!j.contains("version") || !j["version"].is_number_unsigned() || j["version"] != 1)
    throw InputError(where + ": 'version' must be 1");
  if (!j.contains("seed") || !j["seed"].is_number_unsigned()) throw InputError(where + ": 'seed' must be a non-negative integer");
  if (!j.contains("dtype") || j["dtype"] != "bfloat16") throw InputError(where + ": 'dtype' must be \"bfloat16\"");
  FormulaWeights w;
  w.seed = j["seed"].get<uint64_t>();
  return w;
}

}  // namespace segpipe
