// Fuzz target: config.json parsing (segments/model/config.h). Bytes -> JSON -> parse_model_config.
// Invalid JSON is bad input (as read_json_file reports it); parse_model_config may only throw
// InputError, and a config it accepts must satisfy the invariants the engine relies on.
// The same bytes as a model folder's synthetic-weights.json (segments/model/synthetic.h), read from the
// file: InputError only.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <numeric>

#include "fuzz_support.h"
#include "fuzz_write.h"
#include "segments/model/config.h"
#include "segments/model/synthetic.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace segpipe;
  if (fuzz::write_input(kFormulaWeightsFile, data, size).size())
    fuzz::only_input_errors("read_formula_weights", [&] { (void)read_formula_weights(fuzz::scratch_dir()); });
  const auto parsed = fuzz::parse_json_input<nlohmann::json>(data, size);
  if (!parsed) return 0;  // not JSON: the file reader turns this into an InputError naming the file
  const nlohmann::json& j = *parsed;
  fuzz::only_input_errors("parse_model_config", [&] {
    ModelConfig c = parse_model_config(j, "fuzz/config.json");
    FUZZ_INVARIANT(c.hidden > 0 && c.num_layers > 0 && c.vocab > 0);
    FUZZ_INVARIANT(c.num_heads > 0 && c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads == 0);
    FUZZ_INVARIANT(c.head_dim > 0 && c.head_dim % 2 == 0);
    FUZZ_INVARIANT(c.rope_theta > 0 && c.rms_eps > 0);
    FUZZ_INVARIANT(c.num_experts >= 0);
    if (c.num_experts > 0) FUZZ_INVARIANT(c.top_k >= 1 && c.top_k <= c.num_experts && c.moe_intermediate > 0);
    FUZZ_INVARIANT(c.decoder_sparse_step > 0);
    bool any_dense = false;
    for (int i = 0; i < c.num_layers; i++) any_dense |= !c.is_moe_layer(i);
    if (any_dense) FUZZ_INVARIANT(c.intermediate > 0);
    if (!c.mrope_section.empty()) {
      int64_t sum = 0;
      for (int s : c.mrope_section) sum += s;
      FUZZ_INVARIANT(sum == c.head_dim / 2);
    }
    for (int l : c.mlp_only_layers) FUZZ_INVARIANT(l >= 0 && l < c.num_layers);
  });
  return 0;
}
