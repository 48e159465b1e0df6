#include "segments/model/config.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "segments/core/errors.h"

namespace segpipe {

using nlohmann::json;

bool ModelConfig::is_moe_layer(int i) const {
  if (num_experts <= 0) return false;
  if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), i) != mlp_only_layers.end()) return false;
  return decoder_sparse_step > 0 && (i + 1) % decoder_sparse_step == 0;
}

const char* ModelConfig::arch_name() const {
  switch (arch) {
    case Arch::Qwen3: return "qwen3 (dense)";
    case Arch::Qwen3Moe: return "qwen3_moe";
    case Arch::Qwen3OmniMoe: return "qwen3_omni_moe (thinker text model)";
    case Arch::Qwen2Moe: return "qwen2_moe";
  }
  return "?";
}

namespace {

std::string number_text(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

struct Reader {
  const json& j;
  std::string where;  // "config.json" or "config.json: thinker_config.text_config"
  std::string path;   // key path prefix for messages

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw InputError(where + ": " + path + key + ": " + what);
  }
  bool has(const std::string& k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t get_int(const std::string& k) const {
    if (!has(k)) fail(k, "missing required field");
    return int_of(k);
  }
  int64_t int_of(const std::string& k) const {
    const json& v = j[k];
    if (!v.is_number_integer()) fail(k, "must be an integer");
    return v.get<int64_t>();
  }
  int64_t get_int(const std::string& k, int64_t dflt) const { return has(k) ? int_of(k) : dflt; }
  // A count or size: an int in [lo, 2^30], so nothing narrows or overflows downstream.
  int bounded(const std::string& k, int64_t dflt, int64_t lo) const {
    int64_t v = get_int(k, dflt);
    if (v < lo || v > (1 << 30)) fail(k, "must be an integer in [" + std::to_string(lo) + ", 2^30], got " + std::to_string(v));
    return static_cast<int>(v);
  }
  double get_num(const std::string& k, double dflt) const {
    if (!has(k)) return dflt;
    if (!j[k].is_number()) fail(k, "must be a number");
    return j[k].get<double>();
  }
  bool get_bool(const std::string& k, bool dflt) const {
    if (!has(k)) return dflt;
    if (!j[k].is_boolean()) fail(k, "must be true or false");
    return j[k].get<bool>();
  }
  int positive(const std::string& k) const {
    int64_t v = get_int(k);
    if (v <= 0 || v > (1 << 30)) fail(k, "must be a positive integer, got " + std::to_string(v));
    return static_cast<int>(v);
  }
};

// Rotary settings in either spelling: transformers-5 `rope_parameters` or transformers-4
// `rope_theta` + `rope_scaling`. Both present and disagreeing is a contradiction, not a choice.
void parse_rope(const Reader& r, ModelConfig& c) {
  const json* params = nullptr;
  std::string pname;
  if (r.has("rope_parameters")) {
    params = &r.j["rope_parameters"];
    pname = "rope_parameters";
  }
  if (r.has("rope_scaling")) {
    if (params) {
      if (r.j["rope_scaling"] != *params) {
        // transformers 5 may keep both; they must say the same thing where both speak.
        for (auto& k : {"rope_type", "type", "mrope_section"})
          if (r.j["rope_scaling"].contains(k) && params->contains(k) && r.j["rope_scaling"][k] != (*params)[k])
            r.fail("rope_scaling", std::string("contradicts rope_parameters on '") + k + "'");
      }
    } else {
      params = &r.j["rope_scaling"];
      pname = "rope_scaling";
    }
  }
  // No spelling given: transformers' default base. Given, it must make sense: the frequencies are
  // theta^(-2i/head_dim), so theta <= 1 (or inf/NaN) is no rotary embedding at all, not a choice.
  auto check_theta = [&](const std::string& key, double t) {
    if (!std::isfinite(t) || t <= 1) r.fail(key, "must be a finite number > 1, got " + number_text(t));
    return t;
  };
  double theta_top = r.has("rope_theta") ? check_theta("rope_theta", r.get_num("rope_theta", 0)) : -1;
  double theta = theta_top;
  if (params) {
    if (!params->is_object()) r.fail(pname, "must be an object");
    std::string type = "default";
    for (auto& k : {"rope_type", "type"})
      if (params->contains(k) && !(*params)[k].is_null()) {
        if (!(*params)[k].is_string()) r.fail(pname + "." + k, "must be a string");
        type = (*params)[k].get<std::string>();
      }
    // "mrope" is how Qwen2-VL-era configs named default RoPE with sections.
    if (type != "default" && type != "mrope")
      r.fail(pname + ".rope_type", "rope scaling type '" + type + "' is not implemented (only default RoPE)");
    if (params->contains("rope_theta")) {
      if (!(*params)["rope_theta"].is_number()) r.fail(pname + ".rope_theta", "must be a number");
      double t = check_theta(pname + ".rope_theta", (*params)["rope_theta"].get<double>());
      if (theta_top > 0 && t != theta_top) r.fail("rope_theta", "contradicts " + pname + ".rope_theta");
      theta = t;
    }
    if (params->contains("factor") && !(*params)["factor"].is_null() && (*params)["factor"] != 1 &&
        (*params)["factor"] != 1.0)
      r.fail(pname + ".factor", "rope scaling factor is not implemented for default RoPE");
    if (params->contains("mrope_section") && !(*params)["mrope_section"].is_null()) {
      const json& s = (*params)["mrope_section"];
      if (!s.is_array()) r.fail(pname + ".mrope_section", "must be a list of integers");
      for (const json& x : s) {
        if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > (1 << 20))
          r.fail(pname + ".mrope_section", "must be a list of integers in [0, 2^20]");
        c.mrope_section.push_back(static_cast<int>(x.get<int64_t>()));
      }
    }
    for (auto& k : {"interleaved", "mrope_interleaved"})
      if (params->contains(k) && (*params)[k].is_boolean() && (*params)[k].get<bool>()) c.mrope_interleaved = true;
  }
  c.rope_theta = theta > 0 ? theta : 10000.0;
}

void parse_text_config(const Reader& r, ModelConfig& c, bool moe) {
  c.hidden = r.positive("hidden_size");
  c.num_layers = r.positive("num_hidden_layers");
  c.num_heads = r.positive("num_attention_heads");
  c.num_kv_heads = r.has("num_key_value_heads") ? r.positive("num_key_value_heads") : c.num_heads;
  c.vocab = r.positive("vocab_size");
  if (r.has("head_dim")) {
    c.head_dim = r.positive("head_dim");
  } else {
    if (c.hidden % c.num_heads != 0) r.fail("head_dim", "missing and hidden_size is not a multiple of num_attention_heads");
    c.head_dim = c.hidden / c.num_heads;
  }
  if (c.head_dim % 2 != 0) r.fail("head_dim", "must be even for rotate-half RoPE");
  // q_dim() and kv_dim() are ints, like every size below them.
  if (int64_t{c.num_heads} * c.head_dim > (1 << 30))
    r.fail("head_dim", "num_attention_heads x head_dim exceeds 2^30");
  if (c.num_heads % c.num_kv_heads != 0)
    r.fail("num_key_value_heads", "num_attention_heads (" + std::to_string(c.num_heads) +
                                      ") is not a multiple of num_key_value_heads (" + std::to_string(c.num_kv_heads) + ")");
  // Added to a mean square before its inverse square root: a small positive constant. 1e300 became
  // inf in float and zeroed every norm (the model then said token 0 forever); 1e-50 becomes 0.
  const double eps = r.get_num("rms_norm_eps", 1e-6);
  if (!(eps >= 1e-12 && eps <= 1)) r.fail("rms_norm_eps", "must be a number in [1e-12, 1], got " + number_text(eps));
  c.rms_eps = static_cast<float>(eps);
  c.max_position = r.bounded("max_position_embeddings", 0, 0);
  if (r.has("hidden_act") && !r.j["hidden_act"].is_string()) r.fail("hidden_act", "must be a string");
  std::string act = r.has("hidden_act") ? r.j["hidden_act"].get<std::string>() : "silu";
  if (act != "silu") r.fail("hidden_act", "'" + act + "' is not implemented (only silu)");
  if (r.get_bool("attention_bias", false)) r.fail("attention_bias", "attention bias is not implemented");
  if (r.get_bool("use_sliding_window", false)) r.fail("use_sliding_window", "sliding-window attention is not implemented");
  if (r.has("layer_types")) {
    for (const json& t : r.j["layer_types"])
      if (!t.is_string() || t.get<std::string>() != "full_attention")
        r.fail("layer_types", "only full_attention layers are implemented");
  }
  if (c.arch == Arch::Qwen2Moe) {
    // transformers' Qwen2MoeConfig: q/k/v biases unless qkv_bias says otherwise (the hub files predate the key);
    // no q/k norm; every MoE layer has a shared expert of this size behind a sigmoid gate.
    c.qk_norm = false;
    c.qkv_bias = r.get_bool("qkv_bias", true);
    c.shared_expert_intermediate = r.positive("shared_expert_intermediate_size");
  } else if (r.get_int("shared_expert_intermediate_size", 0) > 0) {
    r.fail("shared_expert_intermediate_size", "shared experts are implemented for qwen2_moe only");
  }
  parse_rope(r, c);
  if (!c.mrope_section.empty()) {
    int64_t sum = 0;
    for (int s : c.mrope_section) sum += s;
    if (sum != c.head_dim / 2)
      r.fail("rope_scaling.mrope_section", "sections sum to " + std::to_string(sum) + ", expected head_dim/2 = " +
                                               std::to_string(c.head_dim / 2));
  }
  c.intermediate = r.bounded("intermediate_size", 0, 0);
  if (moe) {
    // transformers 5 writes num_local_experts for qwen3_moe; the hub and the Omni thinker num_experts.
    if (r.has("num_experts") && r.has("num_local_experts") && r.int_of("num_experts") != r.int_of("num_local_experts"))
      r.fail("num_local_experts", "contradicts num_experts");
    if (!r.has("num_experts") && !r.has("num_local_experts")) r.fail("num_experts", "missing required field");
    c.num_experts = r.has("num_experts") ? r.bounded("num_experts", 0, 0) : r.bounded("num_local_experts", 0, 0);
    if (c.num_experts > 0) {
      c.top_k = r.positive("num_experts_per_tok");
      if (c.top_k > c.num_experts) r.fail("num_experts_per_tok", "exceeds num_experts");
      c.moe_intermediate = r.positive("moe_intermediate_size");
    }
    c.decoder_sparse_step = r.bounded("decoder_sparse_step", 1, 1);
    if (r.has("mlp_only_layers")) {
      if (!r.j["mlp_only_layers"].is_array()) r.fail("mlp_only_layers", "must be a list of layer indices");
      for (const json& x : r.j["mlp_only_layers"]) {
        if (!x.is_number_integer()) r.fail("mlp_only_layers", "must be a list of layer indices");
        int64_t i = x.get<int64_t>();
        if (i < 0 || i >= c.num_layers) r.fail("mlp_only_layers", "layer " + std::to_string(i) + " out of range");
        c.mlp_only_layers.push_back(static_cast<int>(i));
      }
    }
    c.norm_topk_prob = r.get_bool("norm_topk_prob", false);
  }
  bool any_dense = false;
  for (int i = 0; i < c.num_layers; i++) any_dense |= !c.is_moe_layer(i);
  if (any_dense && c.intermediate <= 0) r.fail("intermediate_size", "missing, but the model has dense MLP layers");
}

std::string dtype_field(const json& j) {
  for (auto& k : {"dtype", "torch_dtype"})
    if (j.contains(k) && j[k].is_string()) return j[k].get<std::string>();
  return "";
}

}  // namespace

ModelConfig parse_model_config(const json& j, const std::string& where) {
  ModelConfig c;
  c.where = where;
  if (!j.is_object()) throw InputError(where + ": must be a JSON object");
  if (!j.contains("model_type") || !j["model_type"].is_string()) throw InputError(where + ": model_type: missing required field");
  c.model_type = j["model_type"].get<std::string>();
  if (j.contains("dtype") && j.contains("torch_dtype") && j["dtype"].is_string() && j["torch_dtype"].is_string() &&
      j["dtype"] != j["torch_dtype"])
    throw InputError(where + ": torch_dtype: contradicts dtype");
  if (c.model_type == "qwen3" || c.model_type == "qwen3_moe" || c.model_type == "qwen2_moe") {
    c.arch = c.model_type == "qwen3" ? Arch::Qwen3 : c.model_type == "qwen3_moe" ? Arch::Qwen3Moe : Arch::Qwen2Moe;
    c.tensor_prefix = "model.";
    c.lm_head_name = "lm_head.weight";
    Reader r{j, where, ""};
    parse_text_config(r, c, c.arch != Arch::Qwen3);
    c.tie_word_embeddings = r.get_bool("tie_word_embeddings", false);
    c.weight_dtype = dtype_field(j);
  } else if (c.model_type == "qwen3_omni_moe") {
    c.arch = Arch::Qwen3OmniMoe;
    c.tensor_prefix = "thinker.model.";
    c.lm_head_name = "thinker.lm_head.weight";
    if (!j.contains("thinker_config") || !j["thinker_config"].is_object())
      throw InputError(where + ": thinker_config: missing required field");
    const json& th = j["thinker_config"];
    if (!th.contains("text_config") || !th["text_config"].is_object())
      throw InputError(where + ": thinker_config.text_config: missing required field");
    const json& tc = th["text_config"];
    Reader r{tc, where, "thinker_config.text_config."};
    parse_text_config(r, c, true);
    // The text config's own flag wins; older files put it on the thinker config.
    Reader rt{th, where, "thinker_config."};
    c.tie_word_embeddings = r.has("tie_word_embeddings") ? r.get_bool("tie_word_embeddings", false)
                                                         : rt.get_bool("tie_word_embeddings", false);
    c.weight_dtype = dtype_field(tc);
    if (c.weight_dtype.empty()) c.weight_dtype = dtype_field(th);
    if (c.weight_dtype.empty()) c.weight_dtype = dtype_field(j);
  } else {
    throw InputError(where + ": model_type: unknown model type '" + c.model_type +
                     "' (supported: qwen3, qwen3_moe, qwen3_omni_moe, qwen2_moe)");
  }
  if (c.weight_dtype.empty()) c.weight_dtype = dtype_field(j);
  return c;
}

}  // namespace segpipe
