// Segment kind `embeddings`: token ids -> hidden states [T, H]. Holds only the embedding table.
#pragma once
#include <cstdint>
#include <vector>

#include "segments/kernels/cpu/linear.h"
#include "segments/model/tensor_map.h"

namespace segpipe {

class EmbeddingsSegment {
 public:
  EmbeddingsSegment(Checkpoint& ck, const ModelConfig& cfg);
  // Throws InputError for a token id outside the vocabulary.
  void forward(const int32_t* ids, int64_t T, float* out) const;
  const std::vector<LoadedTensor>& loaded() const { return loaded_; }

 private:
  Mat table_;
  std::vector<LoadedTensor> loaded_;
};

}  // namespace segpipe
