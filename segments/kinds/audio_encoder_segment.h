// Segment kind `audio_encoder`: Qwen3-Omni's audio tower (segments/encoders/audio_encoder.h) as a
// segment of a pipeline: log-mel features in, one row per audio placeholder token out.
#pragma once
#include <memory>
#include <vector>

#include "segments/core/encoder_io.h"
#include "segments/core/segment.h"
#include "segments/encoders/audio_encoder.h"
#include "segments/factory/segment_env.h"

namespace segpipe {

class AudioEncoderSegment : public Segment {
 public:
  AudioEncoderSegment(const SegmentParams& params, SegmentEnv& env);
  // io.encode: the features and their frames; writes [tokens, output_dim] to io.encode->out.
  void step(const StepIO& io) override;
  const std::vector<LoadedTensor>& loaded() const override { return encoder_->loaded(); }
  // Rows step() writes for `frames` feature frames, and their width.
  int64_t out_rows(int64_t frames) const { return encoder_->tokens(frames); }
  int width() const { return encoder_->config().output_dim; }

 private:
  ThreadPool& pool_;
  std::unique_ptr<AudioEncoder> encoder_;
};

}  // namespace segpipe
