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

// Encodes every piece of media with the pipeline's encoders, checks the placeholders against the media,
// and runs the prompt as one step from position 0 (runner.step_media). InputError for a prompt whose
// placeholders and media disagree, or a pipeline without the encoder a piece of media needs.
MediaPrefill prefill_media_prompt(Runner& runner, const ModelConfig& cfg, const std::string& model_dir,
                                  const MediaPrompt& prompt, bool all_logits, BoundaryObserver* obs,
                                  std::vector<float>& logits);

}  // namespace segpipe
