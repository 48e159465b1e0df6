// The Qwen3-Omni vision tower (thinker.visual, Qwen3OmniMoeVisionEncoder) on the CPU in float32:
// pixel values [patches, 3*T*p*p] from the image processor and their grids in, one row of out_hidden_size
// per image placeholder token out, plus the DeepStack features the thinker adds to the hidden states of
// its first layers at the image positions.
//
// As the reference computes it (transformers 5.x modeling_qwen3_omni_moe.py):
//   1. patch_embed: Conv3d with kernel = stride = (T, p, p), i.e. a linear map of each patch vector, bias;
//   2. + the learned position embedding interpolated bilinearly to the grid (vision_positions.h);
//   3. blocks: x += proj(attention(LayerNorm1(x))), x += fc2(act(fc1(LayerNorm2(x)))), LayerNorm eps 1e-6,
//      qkv with bias, 2-D rotary embedding on q and k (rotate-half over [row freqs, column freqs] twice),
//      bidirectional attention inside each frame of each image (the reference's cu_seqlens), act =
//      hidden_act (gelu_pytorch_tanh for Qwen3-Omni);
//   4. after block deepstack_visual_indexes[j]: merger_list[j] with its LayerNorm after the shuffle
//      (over the merge_size^2 patches of a block together, width 4D), fc1, exact GELU, fc2;
//   5. the final merger: LayerNorm per patch (width D), then the merge_size^2 patches of a block side by
//      side, fc1, exact GELU, fc2.
// Every reduction has a fixed order (the linear kernel's, or a sequential loop inside one thread's chunk),
// so the result does not depend on the thread count.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "segments/checkpoint/checkpoint.h"
#include "segments/core/loaded_tensor.h"
#include "segments/core/mat.h"
#include "segments/encoders/vision_config.h"
#include "segments/encoders/vision_positions.h"
#include "segments/kernels/cpu/thread_pool.h"

namespace segpipe {

struct VisionEncoderOutput {
  std::vector<float> merged;                  // [patches / merge^2, out_hidden_size]
  std::vector<std::vector<float>> deepstack;  // one per deepstack_visual_indexes entry, same shape
  int64_t tokens = 0;                         // patches / merge^2
};

class VisionEncoder {
 public:
  // Sees the intermediate tensors, named as tools/goldens/media/README-vision.md names them:
  // "patch_embed", "pos_embed", "blocks_input" [N, D], "rotary_freqs" [N, head_dim/2],
  // "blocks.{i}.norm1", "blocks.{i}.attn", "blocks.{i}.mlp", "blocks.{i}.output" [N, D],
  // "deepstack.{j}.norm" [N/m^2, m^2*D], "deepstack.{j}" [N/m^2, out], "merged.norm" [N, D],
  // "merged" [N/m^2, out].
  using Observer = std::function<void(const std::string& name, const float* data, const std::vector<int64_t>& shape)>;

  // Maps the tower's tensors (`prefix` + patch_embed.proj.weight, ...), checking every shape against the
  // config and that each is F32, BF16 or F16 (InputError naming the tensor otherwise).
  VisionEncoder(Checkpoint& ck, const VisionEncoderConfig& cfg, const std::string& prefix = "thinker.visual.");

  // pixel_values: [sum of grid patches, patch_dim] row-major, images one after another in the processor's
  // patch order; grids: (t, h, w) per image. InputError for grids that do not fit the input (sizes, h or
  // w not a multiple of spatial_merge_size, a row count that differs from the grids' total).
  VisionEncoderOutput forward(const float* pixel_values, int64_t rows, const std::vector<VisionGrid>& grids,
                              ThreadPool& pool, const Observer& observer = {}) const;

  const VisionEncoderConfig& config() const { return cfg_; }
  const std::vector<LoadedTensor>& loaded() const { return loaded_; }
  uint64_t loaded_bytes() const;

 private:
  struct Linear {
    Mat w;
    std::vector<float> b;
  };
  struct Norm {
    std::vector<float> w, b;
  };
  struct Block {
    Norm norm1, norm2;
    Linear qkv, proj, fc1, fc2;
  };
  struct Merger {
    Norm norm;  // width D (final merger) or merge^2 * D (DeepStack mergers: norm after the shuffle)
    Linear fc1, fc2;
    bool postshuffle_norm = false;
  };
  TensorView tensor(Checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape);
  Mat mat(Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols, const std::vector<int64_t>& shape);
  std::vector<float> vec(Checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape);
  Linear linear(Checkpoint& ck, const std::string& name, int64_t out, int64_t in);
  Norm norm(Checkpoint& ck, const std::string& name, int64_t n);
  Merger merger(Checkpoint& ck, const std::string& name, bool postshuffle);
  void apply(ThreadPool& pool, const Linear& l, const float* x, int64_t T, float* y) const;
  std::vector<float> run_merger(ThreadPool& pool, const Merger& m, const std::vector<float>& x, int64_t N,
                                const std::string& name, const Observer& observer) const;

  VisionEncoderConfig cfg_;
  std::string prefix_;
  Linear patch_embed_;
  std::vector<float> pos_table_;  // [num_position_embeddings, D]
  std::vector<Block> blocks_;
  std::vector<Merger> deepstack_;
  Merger merger_;
  std::vector<LoadedTensor> loaded_;
};

}  // namespace segpipe
