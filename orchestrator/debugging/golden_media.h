// The multimodal part of a golden (tools/goldens/media/README-thinker.md, docs/golden-format.md): the
// processed audio and images the reference's processor gave, and what its encoders and get_rope_index
// computed from them. load_golden reads it; verify_golden runs the media through the pipeline's encoders
// and compares their outputs before the thinker's boundaries.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "orchestrator/drivers/media_prompt.h"
#include "segments/checkpoint/safetensors.h"
#include "segments/model/config.h"

namespace segpipe {

struct GoldenMedia {
  // Inputs, as the processor gave them.
  std::vector<std::vector<float>> audio_features;  // per audio: [mel, frames] (the valid frames only)
  std::vector<int64_t> audio_frames;
  std::vector<std::vector<float>> image_pixels;  // per image: [patches, patch_dim]
  std::vector<std::vector<int32_t>> image_grids;  // per image: (t, h, w)
  // Reference outputs, by golden name: audio_tower.output, visual.output, visual.deepstack.{j}.
  std::map<std::string, std::vector<float>> outputs;
  std::vector<int64_t> position_ids;  // [3, T] when present
  bool has_rope_delta = false;
  int64_t rope_delta = 0;
  bool empty() const { return audio_features.empty() && image_pixels.empty(); }
};

// Whether `name` is one of the media tensors (read here, not by the text loader).
bool is_media_golden_tensor(const std::string& name);
// Reads and checks them (every shape against the others and the model; InputError naming the file and
// tensor). A golden without media gives an empty GoldenMedia.
GoldenMedia load_golden_media(SafetensorsFile& f, const std::string& path, const ModelConfig& cfg, int64_t T);
// The prompt for prefill_media_prompt: ids with the media in the order of their placeholder blocks.
MediaPrompt golden_media_prompt(const std::vector<int32_t>& ids, const GoldenMedia& m, const std::string& model_dir);

}  // namespace segpipe
