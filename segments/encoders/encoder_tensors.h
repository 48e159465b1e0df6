// Where a Qwen3-Omni checkpoint keeps each encoder's tensors: every tensor under the prefix belongs to
// that encoder segment and to no other (the memory report's weight ranges, the plan's checks).
#pragma once
#include "segments/core/segment_types.h"

namespace segpipe {

// Null for the kinds that are not encoders.
inline const char* encoder_tensor_prefix(SegmentKind k) {
  switch (k) {
    case SegmentKind::audio_encoder: return "thinker.audio_tower.";
    case SegmentKind::vision_encoder: return "thinker.visual.";
    default: return nullptr;
  }
}

}  // namespace segpipe
