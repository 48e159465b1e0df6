// A Qwen3-Omni prompt with audio and images: its token ids (placeholders included) and its media in
// prompt order, run through the pipeline's encoders and then the token chain as the reference's thinker
// does (transformers' Qwen3OmniMoeThinkerForConditionalGeneration.forward): each encoder's rows replace
// its placeholders' embeddings, the 3-D M-RoPE positions of get_rope_index, the DeepStack features added
// after the first layers at the image positions. Decoding then continues at the rope delta.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "orchestrator/drivers/runner.h"
#include "orchestrator/drivers/step_media.h"
#include "segments/model/config.h"

namespace segpipe {

struct MediaPrompt {
  std::vector<int32_t> ids;
  std::vector<MediaInput> media;  // in the order their placeholder blocks appear in ids
};

// What the prefill computed beside the logits: the encoders' outputs (for verify and dump) and where
// decoding continues.
struct MediaPrefill {
  std::vector<EncodedMedia> encoded;  // one per MediaPrompt::media, in order
  int64_t rope_delta = 0;             // every later step: rotary position = slot + rope_delta
};

// The prompt's step media, made: the encoders' outputs and what the prompt's step gives the embeddings
// and layers segments (`step` points into the arrays here: keep this object while the step runs; moving
// it keeps them, copying is refused).
struct PreparedMedia {
  MediaPrefill prefill;
  StepMedia step;
  std::vector<int32_t> rope;  // [3, T]
  std::vector<int32_t> embed_index, ds_index;
  std::vector<float> embed_rows, ds_rows;  // [N, H]; [levels, N_v, H]
  PreparedMedia() = default;
  PreparedMedia(PreparedMedia&&) = default;
  PreparedMedia& operator=(PreparedMedia&&) = default;
  PreparedMedia(const PreparedMedia&) = delete;
  PreparedMedia& operator=(const PreparedMedia&) = delete;
};

// Encodes every piece of media with the pipeline's encoders and checks the placeholders against the
// media. InputError for a prompt whose placeholders and media disagree, or a pipeline without the
// encoder a piece of media needs.
PreparedMedia prepare_media_prompt(Runner& runner, const ModelConfig& cfg, const std::string& model_dir,
                                   const MediaPrompt& prompt);

// prepare_media_prompt, then the prompt as one step from position 0 (runner.step_media).
MediaPrefill prefill_media_prompt(Runner& runner, const ModelConfig& cfg, const std::string& model_dir,
                                  const MediaPrompt& prompt, bool all_logits, BoundaryObserver* obs,
                                  std::vector<float>& logits);

}  // namespace segpipe
