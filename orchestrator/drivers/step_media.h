// What a Qwen3-Omni prompt with audio or images adds to a step of the token chain: the encoders' rows for
// the embeddings segment, the 3-D rotary positions and the DeepStack features for the layers segments
// (segments/core/step_io.h says how each segment applies them). Host memory; a transport carries them
// to where each segment computes. A step without media passes none (bit-identical to a text-only step).
#pragma once
#include <cstdint>
#include <vector>

#include "segments/core/segment_types.h"
#include "segments/core/step_io.h"

namespace segpipe {

struct StepMedia {
  const int32_t* rope_positions = nullptr;  // [3, T] of this step; null: pos0 + t + rope_delta on every axis
  int64_t rope_delta = 0;
  MediaRows embed;      // rows written over the looked-up embeddings (index within this step)
  MediaRows deepstack;  // rows added after the first layers at the image positions (index within this step)
  bool empty() const { return !rope_positions && rope_delta == 0 && embed.n == 0 && deepstack.n == 0; }
};

// Tokens [b, b + n) of a step's media (a prompt prefilled in chunks): the positions of those tokens, the
// rows placed among them (indices made relative to b), their DeepStack rows; rope_delta as it was.
// Holds copies where a slice is not contiguous in the whole (the positions, the DeepStack levels).
struct MediaSlice {
  MediaSlice(const StepMedia& whole, int64_t T, int64_t b, int64_t n, int64_t H);
  StepMedia media;

 private:
  std::vector<int32_t> pos_, embed_index_, ds_index_;
  std::vector<float> ds_rows_;
};

// One piece of media, processed as the reference's processor gives it, for an encoder segment.
struct MediaInput {
  SegmentKind encoder = SegmentKind::audio_encoder;  // audio_encoder or vision_encoder
  std::vector<float> data;     // audio: features [mel, frames]; image: pixel values [patches, patch_dim]
  int64_t frames = 0;          // audio: valid feature frames; image: patch rows
  std::vector<int32_t> grids;  // image: (t, h, w)
};

// An encoder's rows: [levels, tokens, width], level 0 the rows for the embeddings, then (vision) one
// level per DeepStack layer.
struct EncodedMedia {
  std::vector<float> rows;
  int64_t tokens = 0;
  int levels = 1;
  int width = 0;
};

}  // namespace segpipe
