// The vision tower's settings, read from a Qwen3-Omni checkpoint's config.json
// (thinker_config.vision_config, model_type qwen3_omni_moe_vision_encoder).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace segpipe {

enum class VisionActivation { GeluTanh, GeluErf };

struct VisionEncoderConfig {
  int depth = 0;
  int hidden_size = 0;
  int num_heads = 0;
  int intermediate_size = 0;
  int in_channels = 3;
  int patch_size = 0;
  int temporal_patch_size = 0;
  int spatial_merge_size = 0;
  int num_position_embeddings = 0;
  int out_hidden_size = 0;
  std::vector<int> deepstack_visual_indexes;
  VisionActivation hidden_act = VisionActivation::GeluTanh;  // the blocks' MLP; the mergers use exact GELU
  double rope_theta = 10000.0;
  std::string tensor_prefix = "thinker.visual.";
  std::string where;  // "<dir>/config.json", for messages

  int head_dim() const { return hidden_size / num_heads; }
  // Side of the learned position grid: int(num_position_embeddings ** 0.5), as the reference takes it.
  int num_grid_per_side() const;
  int patch_dim() const { return in_channels * temporal_patch_size * patch_size * patch_size; }
  int merge_unit() const { return spatial_merge_size * spatial_merge_size; }
};

// InputError naming `where` and the key (thinker_config.vision_config.<key>) for a missing, mistyped or
// contradictory field: head count not dividing the width, a head size the 2-D rotary embedding cannot
// split (a multiple of 4 is needed), DeepStack indexes outside the blocks or repeated, an activation that
// is not implemented.
VisionEncoderConfig parse_vision_config(const nlohmann::json& config, const std::string& where);

}  // namespace segpipe
