// The Qwen2-VL image processor as transformers 5 runs it for Qwen3-Omni (Qwen2VLImageProcessor, torchvision
// backend; Qwen3OmniMoeProcessor passes images to it unchanged):
//   smart_resize -> bicubic antialiased resize on uint8 -> rescale and normalize in float32 (fused as the
//   reference fuses them: (x - mean/rescale) / (std/rescale)) -> a still image repeated to
//   temporal_patch_size frames -> patches of temporal_patch_size x patch_size x patch_size per channel, in
//   the reference's order: merge_size x merge_size blocks of patches, row-major inside a block, blocks
//   row-major over the image.
// The parameters come from the caller (the checkpoint's preprocessor_config.json, or the Qwen3-Omni values).
#pragma once
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "media/image/rgb_image.h"

namespace segpipe::media {

struct ImageProcessorConfig {
  int64_t patch_size = 16;
  int64_t merge_size = 2;
  int64_t temporal_patch_size = 2;
  int64_t min_pixels = 3136;      // size.shortest_edge in transformers 5
  int64_t max_pixels = 12845056;  // size.longest_edge
  std::array<float, 3> image_mean{0.5f, 0.5f, 0.5f};
  std::array<float, 3> image_std{0.5f, 0.5f, 0.5f};
  double rescale_factor = 1.0 / 255.0;
  bool do_resize = true;
  bool do_rescale = true;
  bool do_normalize = true;
};

// Qwen/Qwen3-Omni-30B-A3B-*'s preprocessor_config.json: patch 16, merge 2, temporal 2, min_pixels 3136,
// max_pixels 12845056, mean = std = 0.5 (what the struct's defaults hold).
ImageProcessorConfig qwen3_omni_image_processor_config();

// The image keys of a preprocessor_config.json over `defaults`: patch_size, merge_size, temporal_patch_size,
// min_pixels / max_pixels or size.{shortest_edge, longest_edge} (transformers 5 spelling; min/max_pixels
// win, as in the reference's __init__), image_mean, image_std, rescale_factor, do_resize, do_rescale,
// do_normalize. InputError naming `file` and the key for a wrong type or an impossible value.
ImageProcessorConfig image_processor_config_from_json(const nlohmann::json& j, const std::string& file,
                                                      const ImageProcessorConfig& defaults);

struct ProcessedImage {
  std::vector<float> pixel_values;  // [grid_t * grid_h * grid_w, 3 * temporal * patch * patch]
  int64_t grid_t = 0, grid_h = 0, grid_w = 0;
  int64_t resized_height = 0, resized_width = 0;
  int64_t patch_dim = 0;

  int64_t num_patches() const { return grid_t * grid_h * grid_w; }
  // Image placeholder tokens in the prompt: grid.prod() // merge_size**2 (Qwen3OmniMoeProcessor).
  int64_t placeholder_tokens(int64_t merge_size) const { return num_patches() / (merge_size * merge_size); }
};

// The whole processor on a decoded image; `name` names the image in errors (InputError for an aspect
// ratio above 200 or a size the rules cannot meet).
ProcessedImage preprocess_image(const RgbImage& image, const ImageProcessorConfig& cfg, const std::string& name);

// The steps after the resize, exposed for tests: rescale/normalize and patchify an already resized image
// (its sides must be multiples of patch_size * merge_size).
ProcessedImage normalize_and_patchify(const RgbImage& resized, const ImageProcessorConfig& cfg);

}  // namespace segpipe::media
