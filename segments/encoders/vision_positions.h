// Where each patch sits, for the Qwen3-Omni vision tower: the learned position embedding interpolated to
// the image's grid, and the 2-D rotary angles. Both follow the patch order of the image processor
// (merge_size x merge_size blocks, row-major inside a block, blocks row-major, frames one after another).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace segpipe {

struct VisionGrid {
  int64_t t = 0, h = 0, w = 0;  // frames (temporal patches) and patches down / across
  int64_t patches() const { return t * h * w; }
};

// fast_pos_embed_interpolate: the table [side*side, dim] (row-major grid of side x side) sampled
// bilinearly at torch.linspace(0, side-1, h) x torch.linspace(0, side-1, w) (float32, the corner weights
// (1-dh)(1-dw), (1-dh)dw, dh(1-dw), dh*dw, summed in that order), reordered into merge blocks and repeated
// for every frame. Returns [sum of patches, dim].
std::vector<float> interpolate_position_embedding(const float* table, int side, int64_t dim,
                                                  const std::vector<VisionGrid>& grids, int64_t merge);

// rot_pos_emb: for each patch, its row and column (in patches) times the inverse frequencies
// 1 / theta^(2k / (head_dim/2)), k < head_dim/4: [patches, head_dim/2] = [row freqs, column freqs].
std::vector<float> vision_rotary_freqs(const std::vector<VisionGrid>& grids, int64_t merge, int64_t head_dim,
                                       double theta);

// torch.linspace(start, end, steps) in float32 as torch computes it on the CPU: the first half from
// start, the second half back from end.
std::vector<float> torch_linspace(float start, float end, int64_t steps);

}  // namespace segpipe
