// Segment kind `lm_head`: final RMSNorm, then the lm_head projection (or the tied embedding table).
#pragma once
#include <cstdint>
#include <vector>

#include "segments/kernels/cpu/linear.h"
#include "segments/model/tensor_map.h"

namespace segpipe {

class LmHeadSegment {
 public:
  LmHeadSegment(Checkpoint& ck, const ModelConfig& cfg, ThreadPool& pool);
  // x [T, H]. normed (optional) receives the final norm's output [T, H]; logits receives
  // [T, V] when all_positions, else only the last position's [V].
  void forward(const float* x, int64_t T, bool all_positions, float* normed, float* logits);
  int vocab() const { return static_cast<int>(head_.rows); }
  const std::vector<LoadedTensor>& loaded() const { return loaded_; }

 private:
  const ModelConfig& cfg_;
  ThreadPool& pool_;
  std::vector<float> norm_;
  Mat head_;
  std::vector<LoadedTensor> loaded_;
  std::vector<float> h_;
};

}  // namespace segpipe
