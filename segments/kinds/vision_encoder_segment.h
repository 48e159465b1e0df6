// Segment kind `vision_encoder`: Qwen3-Omni's vision tower (segments/encoders/vision_encoder.h) as a
// segment of a pipeline: pixel patches and their grids in, one row per image placeholder token out,
// followed by the DeepStack features the layers segments add at the image positions.
#pragma once
#include <memory>
#include <vector>

#include "segments/core/encoder_io.h"
#include "segments/core/segment.h"
#include "segments/encoders/vision_encoder.h"
#include "segments/factory/segment_env.h"

namespace segpipe {

class VisionEncoderSegment : public Segment {
 public:
  VisionEncoderSegment(const SegmentParams& params, SegmentEnv& env);
  // io.encode: the patches and their grids; writes [1 + levels, tokens, out_hidden_size] to io.encode->out.
  void step(const StepIO& io) override;
  const std::vector<LoadedTensor>& loaded() const override { return encoder_->loaded(); }
  int deepstack_levels() const { return static_cast<int>(encoder_->config().deepstack_visual_indexes.size()); }
  int width() const { return encoder_->config().out_hidden_size; }

 private:
  ThreadPool& pool_;
  std::unique_ptr<VisionEncoder> encoder_;
};

}  // namespace segpipe
