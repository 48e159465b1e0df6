// The Qwen3-Omni audio tower (thinker.audio_tower, Qwen3OmniMoeAudioEncoder) on the CPU in float32:
// log-mel features [num_mel_bins, frames] in, one row of output_dim per audio placeholder token out.
//
// As the reference computes it (transformers 5.x modeling_qwen3_omni_moe.py):
//   1. the frames are cut into chunks of 2 * n_window (the last may be shorter) and every chunk is
//      zero-padded to the longest one;
//   2. per chunk, three Conv2d(kernel 3, stride 2, padding 1) over (mel, time), each followed by GELU;
//      the [channels, mel', time'] result is flattened per time step (channel-major) and projected by
//      conv_out (no bias); the sinusoidal position of the step within its chunk is added;
//   3. the padded steps are dropped and the chunks' steps concatenated;
//   4. encoder layers (pre-LayerNorm, bidirectional attention restricted to windows of
//      n_window_infer / (2 * n_window) chunks, GELU MLP);
//   5. ln_post, proj1, GELU, proj2.
// Every reduction has a fixed order (the linear kernel's, or a sequential loop inside one thread's
// chunk), so the result does not depend on the thread count.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "segments/checkpoint/checkpoint.h"
#include "segments/core/loaded_tensor.h"
#include "segments/core/mat.h"
#include "segments/encoders/audio_config.h"
#include "segments/kernels/cpu/thread_pool.h"

namespace segpipe {

class AudioEncoder {
 public:
  // Sees the intermediate tensors, named as tools/goldens/media/README-audio.md names them:
  // "conv2d1", "conv2d2", "conv2d3" [chunks, C, mel', t] (before their GELU), "conv_out" [chunks, t, d],
  // "encoder_input" [tokens, d], "layers.{i}.output" [tokens, d], "ln_post" [tokens, d],
  // "proj1" [tokens, d] (before the GELU), "output" [tokens, output_dim].
  using Observer = std::function<void(const std::string& name, const float* data, const std::vector<int64_t>& shape)>;

  // Maps the tower's tensors (`prefix` + conv2d1.weight, ...), checking every shape against the config
  // and that each is F32, BF16 or F16 (InputError naming the tensor otherwise).
  AudioEncoder(Checkpoint& ck, const AudioEncoderConfig& cfg, const std::string& prefix = "thinker.audio_tower.");

  // features: [num_mel_bins, n_frames] row-major (LogMelFeatures::data). Returns [tokens(n_frames),
  // output_dim]. InputError for n_frames < 1, and for inputs on which this config's real token count
  // and the reference's placeholder count differ (audio_lengths.h).
  std::vector<float> forward(const float* features, int64_t n_frames, ThreadPool& pool,
                             const Observer& observer = {}) const;

  // Output rows for n_frames (= the processor's placeholder count wherever forward accepts the input).
  int64_t tokens(int64_t n_frames) const;
  // The attention windows as cumulative token offsets (the reference's cu_seqlens).
  std::vector<int64_t> window_offsets(int64_t n_frames) const;

  const AudioEncoderConfig& config() const { return cfg_; }
  const std::vector<LoadedTensor>& loaded() const { return loaded_; }
  uint64_t loaded_bytes() const;

 private:
  struct Linear {
    Mat w;
    std::vector<float> b;  // empty: no bias
  };
  struct Norm {
    std::vector<float> w, b;
  };
  struct Layer {
    Norm attn_norm, mlp_norm;
    Linear q, k, v, o, fc1, fc2;
  };
  TensorView tensor(Checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape);
  Mat mat(Checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape);
  std::vector<float> vec(Checkpoint& ck, const std::string& name, int64_t n);
  Linear linear(Checkpoint& ck, const std::string& name, int64_t out, int64_t in, bool bias);
  Norm norm(Checkpoint& ck, const std::string& name, int64_t n);
  void apply(ThreadPool& pool, const Linear& l, const float* x, int64_t T, float* y) const;

  AudioEncoderConfig cfg_;
  std::string prefix_;
  Linear conv1_, conv2_, conv3_, conv_out_, proj1_, proj2_;
  Norm ln_post_;
  std::vector<Layer> layers_;
  std::vector<float> positions_;  // [max_source_positions, d_model]
  std::vector<LoadedTensor> loaded_;
};

}  // namespace segpipe
