#include "segments/encoders/vision_config.h"

#include <algorithm>
#include <cmath>

#include "segments/core/errors.h"

namespace segpipe {

using nlohmann::json;

int VisionEncoderConfig::num_grid_per_side() const {
  return static_cast<int>(std::sqrt(static_cast<double>(num_position_embeddings)));
}

namespace {

struct VisionReader {
  const json& j;
  const std::string& where;
  static constexpr const char* kPath = "thinker_config.vision_config.";

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw InputError(where + ": " + kPath + key + ": " + what);
  }
  bool has(const std::string& k) const { return j.contains(k) && !j[k].is_null(); }
  int positive(const std::string& k) const {
    if (!has(k)) fail(k, "missing required field");
    const json& v = j[k];
    if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (1 << 24))
      fail(k, "must be a positive integer (at most 2^24), got " + v.dump());
    return static_cast<int>(v.get<int64_t>());
  }
  int positive(const std::string& k, int dflt) const { return has(k) ? positive(k) : dflt; }
};

}  // namespace

VisionEncoderConfig parse_vision_config(const json& config, const std::string& where) {
  if (!config.is_object()) throw InputError(where + ": must be a JSON object");
  if (!config.contains("model_type") || config["model_type"] != "qwen3_omni_moe")
    throw InputError(where + ": model_type: the vision encoder needs a qwen3_omni_moe checkpoint");
  if (!config.contains("thinker_config") || !config["thinker_config"].is_object())
    throw InputError(where + ": thinker_config: missing required field");
  const json& th = config["thinker_config"];
  if (!th.contains("vision_config") || !th["vision_config"].is_object())
    throw InputError(where + ": thinker_config.vision_config: missing required field");
  const json& vc = th["vision_config"];
  VisionReader r{vc, where};

  VisionEncoderConfig c;
  c.where = where;
  c.depth = r.positive("depth");
  c.hidden_size = r.positive("hidden_size");
  c.num_heads = r.positive("num_heads");
  c.intermediate_size = r.positive("intermediate_size");
  c.in_channels = r.positive("in_channels", 3);
  c.patch_size = r.positive("patch_size");
  c.temporal_patch_size = r.positive("temporal_patch_size");
  c.spatial_merge_size = r.positive("spatial_merge_size");
  c.num_position_embeddings = r.positive("num_position_embeddings");
  c.out_hidden_size = r.positive("out_hidden_size");
  if (c.in_channels != 3) r.fail("in_channels", "must be 3 (images are RGB), got " + std::to_string(c.in_channels));
  if (c.hidden_size % c.num_heads != 0)
    r.fail("num_heads", std::to_string(c.num_heads) + " does not divide hidden_size " + std::to_string(c.hidden_size));
  // The rotary table has head_dim/2 entries per token, half for the row and half for the column, each
  // built from frequencies at even steps: head_dim must split in four.
  if (c.head_dim() % 4 != 0)
    r.fail("num_heads", "head size hidden_size/num_heads = " + std::to_string(c.head_dim()) +
                            " must be a multiple of 4 for the 2-D rotary embedding");
  if (c.num_grid_per_side() < 1) r.fail("num_position_embeddings", "must be at least 1");

  if (!r.has("deepstack_visual_indexes")) r.fail("deepstack_visual_indexes", "missing required field");
  const json& ds = vc["deepstack_visual_indexes"];
  if (!ds.is_array()) r.fail("deepstack_visual_indexes", "must be a list of block indexes");
  for (const json& v : ds) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= c.depth)
      r.fail("deepstack_visual_indexes", "must hold block indexes in [0, depth=" + std::to_string(c.depth) +
                                             "), got " + ds.dump());
    const int i = static_cast<int>(v.get<int64_t>());
    if (std::find(c.deepstack_visual_indexes.begin(), c.deepstack_visual_indexes.end(), i) !=
        c.deepstack_visual_indexes.end())
      r.fail("deepstack_visual_indexes", "repeats block " + std::to_string(i));
    c.deepstack_visual_indexes.push_back(i);
  }

  if (r.has("hidden_act")) {
    if (!vc["hidden_act"].is_string()) r.fail("hidden_act", "must be a string");
    const std::string act = vc["hidden_act"].get<std::string>();
    if (act == "gelu_pytorch_tanh")
      c.hidden_act = VisionActivation::GeluTanh;
    else if (act == "gelu")
      c.hidden_act = VisionActivation::GeluErf;
    else
      r.fail("hidden_act", "'" + act + "' is not implemented (gelu_pytorch_tanh, gelu)");
  }
  // The rotary base: transformers 5 spells it rope_parameters.rope_theta; the tower's default is 10000.
  for (const char* k : {"rope_parameters", "rope_scaling"}) {
    if (!r.has(k)) continue;
    const json& p = vc[k];
    if (!p.is_object()) r.fail(k, "must be an object");
    if (p.contains("rope_theta") && !p["rope_theta"].is_null()) {
      if (!p["rope_theta"].is_number() || !std::isfinite(p["rope_theta"].get<double>()) ||
          p["rope_theta"].get<double>() <= 1.0)
        r.fail(std::string(k) + ".rope_theta", "must be a finite number > 1, got " + p["rope_theta"].dump());
      c.rope_theta = p["rope_theta"].get<double>();
    }
  }
  if (r.has("rope_theta")) {
    const json& t = vc["rope_theta"];
    if (!t.is_number() || !std::isfinite(t.get<double>()) || t.get<double>() <= 1.0)
      r.fail("rope_theta", "must be a finite number > 1, got " + t.dump());
    if (vc.contains("rope_parameters") && t.get<double>() != c.rope_theta)
      r.fail("rope_theta", "contradicts rope_parameters.rope_theta");
    c.rope_theta = t.get<double>();
  }
  return c;
}

}  // namespace segpipe
