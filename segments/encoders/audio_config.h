// The audio tower's settings: thinker_config.audio_config of a Qwen3-Omni config.json
// (Qwen3OmniMoeAudioEncoderConfig). Shapes come from here; the tensors are checked against them.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace segpipe {

struct AudioEncoderConfig {
  int num_mel_bins = 128;            // feature rows (the feature extractor's feature_size must equal it)
  int d_model = 1280;                // encoder width
  int encoder_layers = 32;
  int encoder_attention_heads = 20;  // head_dim = d_model / heads
  int encoder_ffn_dim = 5120;
  int downsample_hidden_size = 480;  // channels of the three stride-2 convolutions
  int output_dim = 2048;             // proj2 width = the thinker's hidden size
  int max_source_positions = 1500;   // rows of the sinusoidal position table
  int n_window = 50;                 // a chunk is 2 * n_window feature frames
  int n_window_infer = 800;          // an attention window spans n_window_infer / (2 * n_window) chunks
  int conv_chunksize = 500;          // the reference's memory batching of chunks; no effect on results
  std::string activation_function = "gelu";
  std::string where;                 // "DIR/config.json: thinker_config.audio_config", for messages

  int head_dim() const { return d_model / encoder_attention_heads; }
  // Mel rows left after the three stride-2 convolutions: conv_out's input is downsample_hidden_size * this.
  int conv_freq_bins() const { return (((num_mel_bins + 1) / 2 + 1) / 2 + 1) / 2; }
  int chunk_frames() const { return 2 * n_window; }
};

// Reads config["thinker_config"]["audio_config"]; `where` names the file (".../config.json"). A missing
// section or required key, a value of the wrong type or out of range, and settings that contradict each
// other (d_model not divisible by the heads, an odd d_model, n_window_infer shorter than a chunk, a
// position table shorter than a chunk's tokens, an activation other than gelu) are InputErrors naming
// the file and the key.
AudioEncoderConfig parse_audio_encoder_config(const nlohmann::json& config, const std::string& where);

}  // namespace segpipe
