// Segment kind `lm_head`: final RMSNorm, then the lm_head projection (or the tied embedding table).
#pragma once
#include <cstdint>
#include <vector>

#include "segments/core/segment.h"
#include "segments/factory/segment_env.h"
#include "segments/kernels/cpu/linear.h"
#include "segments/model/tensor_map.h"

namespace segpipe {

class LmHeadSegment : public Segment {
 public:
  LmHeadSegment(const SegmentParams& params, SegmentEnv& env);
  // io.hidden() [T, H] -> io.out: logits [T, V] when io.all_positions, else only the last position's
  // [V]. io.normed (optional) receives the final norm's output [T, H]. Reports the norm, and the logits
  // when all_positions, to io.observer.
  void step(const StepIO& io) override;
  int vocab() const { return static_cast<int>(head_.rows); }
  const std::vector<LoadedTensor>& loaded() const override { return loaded_; }

 private:
  void forward(const float* x, int64_t T, bool all_positions, float* normed, float* logits);
  const ModelConfig& cfg_;
  ThreadPool& pool_;
  std::vector<float> norm_;
  Mat head_;
  std::vector<LoadedTensor> loaded_;
  std::vector<float> h_;
};

}  // namespace segpipe
