// Qwen3-Omni's 3-D rotary positions (time, height, width) for a prompt mixing text, images and audio:
// transformers' Qwen3OmniMoePreTrainedModelForConditionalGeneration.get_rope_index, step for step.
// Text counts on from the previous block's largest position + 1; each start/end token takes one
// position; an image's tokens take (start + t * position_id_per_seconds, start + row, start + column)
// over its merged grid; an audio's tokens take consecutive positions. Decoding continues at
// slot + delta on all three axes, delta = largest position + 1 - prompt length (<= 0: an image's tokens
// share positions).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "segments/model/media_placeholders.h"

namespace segpipe {

struct MropePositions {
  int64_t T = 0;
  std::vector<int32_t> pos;  // [3, T], row-major: pos[a * T + t], a = 0 time, 1 height, 2 width
  int64_t delta = 0;         // the reference's rope_deltas
};

// ids: the prompt with its placeholders; images / audio_mel_frames: the media in prompt order (grids as
// the image processor gives them, feature frames as the feature extractor's attention mask sums them).
// With no image (even with audio) the reference takes positions 0..T-1 on every axis, and so does this.
// Checks the placeholders first (check_media_placeholders); video and audio-in-video are refused. Throws
// InputError for any disagreement, or for positions beyond int32.
MropePositions mrope_positions(std::span<const int32_t> ids, const MediaTokenConfig& tok,
                               std::span<const ImageGrid> images, std::span<const int64_t> audio_mel_frames);

}  // namespace segpipe
