// Segment kind `embeddings`: token ids -> hidden states [T, H]. Holds only the embedding table.
#pragma once
#include <cstdint>
#include <vector>

#include "segments/core/segment.h"
#include "segments/factory/segment_env.h"
#include "segments/kernels/cpu/linear.h"
#include "segments/model/tensor_map.h"

namespace segpipe {

class EmbeddingsSegment : public Segment {
 public:
  EmbeddingsSegment(const SegmentParams& params, SegmentEnv& env);
  // io.ids() [T] -> io.out [T, H], with io.media's rows (Qwen3-Omni's audio/image features) written
  // over the rows at io.media.index; reports the result to io.observer. Throws InputError for a token
  // id outside the vocabulary or media rows placed outside the step.
  void step(const StepIO& io) override;
  const std::vector<LoadedTensor>& loaded() const override { return loaded_; }

 private:
  void forward(const int32_t* ids, int64_t T, float* out) const;
  Mat table_;
  std::vector<LoadedTensor> loaded_;
};

}  // namespace segpipe
