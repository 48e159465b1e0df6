// Deterministic synthetic checkpoints in the Hugging Face layout (segpipe make-model). Every weight
// is a pure function of (seed, tensor name, element index) — a counter-based hash, no sequential
// RNG state — so any process or device can regenerate any slice of any tensor independently and
// get the same bits.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "segments/core/dtype.h"

namespace segpipe {

struct MakeModelOptions {
  std::string preset;
  std::string out_dir;
  uint64_t seed = 0;
  DType dtype = DType::BF16;
  std::optional<int> num_layers, num_experts, top_k, vocab_size;
  std::string tokenizer;          // optional: folder or tokenizer.json copied into the checkpoint
  uint64_t max_shard_bytes = 4ull << 30;
  bool formula_only = false;      // write the formula's parameters instead of the tensors (below)
};

// A model folder whose weights are the formula itself (make-model --weights formula): config.json and
// kFormulaWeightsFile (seed, dtype), no tensor files. GPU segments evaluate the formula on the device,
// bit for bit the files make-model would write, so a full-size model runs where its 60 GB of files
// could not be written or carried; the CPU needs the files.
inline constexpr const char* kFormulaWeightsFile = "synthetic-weights.json";
struct FormulaWeights {
  uint64_t seed = 0;
  DType dtype = DType::BF16;  // the checkpoint dtype the weights stand for (bf16 only, as the GPU makes them)
};
// nullopt where the folder has no kFormulaWeightsFile; InputError naming the file where it is malformed.
std::optional<FormulaWeights> read_formula_weights(const std::string& model_dir);

struct PresetInfo {
  std::string name;
  std::string summary;
};
std::vector<PresetInfo> synthetic_presets();

// The config.json the preset (with overrides) produces.
nlohmann::json synthetic_config(const MakeModelOptions& o);
// Writes config.json, generation_config.json, safetensors (sharded above max_shard_bytes, with an
// index) and the tokenizer files when asked. Returns the total tensor bytes.
uint64_t make_synthetic_model(const MakeModelOptions& o);

// Element `index` of tensor `name` as float32 before rounding to the checkpoint dtype; `scale` is the
// half-width of the uniform distribution and `offset` its centre.
float synthetic_value(uint64_t seed, uint64_t name_hash, uint64_t index, float scale, float offset);
uint64_t synthetic_name_hash(const std::string& name);

}  // namespace segpipe
