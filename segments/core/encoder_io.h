// What an encoder segment (audio_encoder, vision_encoder) reads and writes in one step: one piece of
// media, processed as the reference's processor gives it (media/), in; its rows for the thinker out.
// StepIO::encode points here for those kinds; the pointers are memory of the segment's backend.
#pragma once
#include <cstdint>

namespace segpipe {

struct EncoderIO {
  // audio_encoder: log-mel features float32 [num_mel_bins, frames], `frames` = the feature extractor's
  // valid frames (its attention mask's sum).
  // vision_encoder: pixel values float32 [patches, patch_dim] of one or more images, one after another
  // in the image processor's patch order, `grids` their (t, h, w) int32 [n_grids, 3].
  const float* in = nullptr;
  int64_t frames = 0;   // audio: feature frames; vision: patch rows
  const int32_t* grids = nullptr;
  int64_t n_grids = 0;
  // audio_encoder: [tokens, output_dim]. vision_encoder: [1 + deepstack levels, tokens, out_hidden_size]:
  // the merged rows, then each DeepStack feature. tokens = the placeholder count of the media
  // (segments/model/media_placeholders.h); the caller sizes out with the segment's out_rows().
  float* out = nullptr;
  // Floats out holds: a segment that would write more fails instead (its caller sized out from the
  // placeholders; a segment process is told the size by a request it must not trust).
  int64_t out_floats = 0;
};

}  // namespace segpipe
