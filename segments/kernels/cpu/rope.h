// Rotate-half rotary position embedding (dimension i pairs with i + head_dim/2), with the cos/sin
// tables computed in float32 as transformers computes them.
//
// Qwen3-Omni's thinker uses M-RoPE: every token has three positions (time, height, width) and each
// frequency reads one of them. For text-only input the three are equal, so apply() with one position is
// exact; apply3() takes the three rows that a prompt with images gives (segments/model/mrope_positions.h),
// after set_mrope_sections() has said which frequency reads which row.
#pragma once
#include <cstdint>
#include <vector>

namespace segpipe {

class Rope {
 public:
  Rope(int head_dim, double theta);
  // The interleaved layout of transformers' Qwen3OmniMoeThinkerTextRotaryEmbedding (it interleaves
  // whatever the config's `interleaved` flag says): frequency j reads the height row when j % 3 == 1 and
  // j < 3 * sections[1], the width row when j % 3 == 2 and j < 3 * sections[2], else the time row
  // (sections[0] is not read). Empty sections: the reference's default [24, 20, 20].
  void set_mrope_sections(const std::vector<int>& sections);
  // Rotates `heads` vectors of head_dim in place, all at position `pos` (on every axis).
  void apply(float* x, int heads, int64_t pos) const;
  // The same at the three M-RoPE positions (time, height, width).
  void apply3(float* x, int heads, int64_t pt, int64_t ph, int64_t pw) const;
  int head_dim() const { return head_dim_; }

 private:
  int head_dim_;
  std::vector<float> inv_freq_;  // [head_dim / 2]
  std::vector<uint8_t> axis_;    // [head_dim / 2]: 0 time, 1 height, 2 width (all 0 until set_mrope_sections)
};

}  // namespace segpipe
