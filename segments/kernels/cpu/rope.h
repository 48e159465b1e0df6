// Rotate-half rotary position embedding (dimension i pairs with i + head_dim/2), with the cos/sin
// tables computed in float32 as transformers computes them. For the Omni thinker's M-RoPE on
// text-only input the three position rows are equal, so interleaving the sections changes nothing
// and this 1-D form is exact.
#pragma once
#include <cstdint>
#include <vector>

namespace segpipe {

class Rope {
 public:
  Rope(int head_dim, double theta);
  // Rotates `heads` vectors of head_dim in place, all at position `pos`.
  void apply(float* x, int heads, int64_t pos) const;
  int head_dim() const { return head_dim_; }

 private:
  int head_dim_;
  std::vector<float> inv_freq_;  // [head_dim / 2]
};

}  // namespace segpipe
