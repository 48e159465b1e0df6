#include "segments/encoders/audio_config.h"

#include "segments/core/errors.h"
#include "segments/encoders/audio_lengths.h"

namespace segpipe {

namespace {

using json = nlohmann::json;

struct AudioReader {
  const json& j;
  std::string where;
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw InputError(where + ": thinker_config.audio_config." + key + ": " + what);
  }
  bool has(const std::string& k) const { return j.contains(k) && !j[k].is_null(); }
  // A size or count: an integer in [lo, 2^24] (a real tower is far inside; nothing overflows int64
  // products of two of them).
  int required(const std::string& k, int64_t lo = 1) const {
    if (!has(k)) fail(k, "missing required field");
    if (!j[k].is_number_integer()) fail(k, "must be an integer");
    const int64_t v = j[k].get<int64_t>();
    if (v < lo || v > (int64_t{1} << 24))
      fail(k, "must be an integer in [" + std::to_string(lo) + ", 2^24], got " + std::to_string(v));
    return static_cast<int>(v);
  }
  int optional(const std::string& k, int dflt) const { return has(k) ? required(k) : dflt; }
};

}  // namespace

AudioEncoderConfig parse_audio_encoder_config(const json& config, const std::string& where) {
  if (!config.is_object() || !config.contains("thinker_config") || !config["thinker_config"].is_object())
    throw InputError(where + ": thinker_config: missing required field (not a Qwen3-Omni config)");
  const json& th = config["thinker_config"];
  if (!th.contains("audio_config") || !th["audio_config"].is_object())
    throw InputError(where + ": thinker_config.audio_config: missing required field");
  const AudioReader r{th["audio_config"], where};
  AudioEncoderConfig c;
  c.where = where + ": thinker_config.audio_config";
  c.num_mel_bins = r.required("num_mel_bins");
  c.d_model = r.required("d_model");
  c.encoder_layers = r.required("encoder_layers", 0);
  c.encoder_attention_heads = r.required("encoder_attention_heads");
  c.encoder_ffn_dim = r.required("encoder_ffn_dim");
  c.downsample_hidden_size = r.required("downsample_hidden_size");
  c.output_dim = r.required("output_dim");
  c.max_source_positions = r.required("max_source_positions");
  c.n_window = r.required("n_window");
  c.n_window_infer = r.required("n_window_infer");
  // Only batches the reference's convolutions to bound memory: the result does not depend on it.
  c.conv_chunksize = r.optional("conv_chunksize", 500);
  if (r.has("activation_function")) {
    if (!r.j["activation_function"].is_string()) r.fail("activation_function", "must be a string");
    c.activation_function = r.j["activation_function"].get<std::string>();
  }
  // Contradictions the reference would only meet mid-forward (or compute nonsense with).
  if (c.activation_function != "gelu")
    r.fail("activation_function", "'" + c.activation_function + "' is not supported (only gelu, as Qwen3-Omni uses)");
  if (c.d_model % c.encoder_attention_heads != 0)
    r.fail("encoder_attention_heads", std::to_string(c.encoder_attention_heads) + " does not divide d_model " +
                                          std::to_string(c.d_model));
  if (c.d_model % 2 != 0 || c.d_model < 4)
    r.fail("d_model", "must be even and at least 4 (sinusoidal positions: half sines, half cosines), got " +
                          std::to_string(c.d_model));
  if (c.n_window_infer < c.chunk_frames())
    r.fail("n_window_infer", std::to_string(c.n_window_infer) + " is shorter than a chunk (2 * n_window = " +
                                 std::to_string(c.chunk_frames()) + " frames): the attention window would be empty");
  if (audio_conv_length(c.chunk_frames()) > c.max_source_positions)
    r.fail("max_source_positions", std::to_string(c.max_source_positions) + " positions, but a chunk of " +
                                       std::to_string(c.chunk_frames()) + " frames makes " +
                                       std::to_string(audio_conv_length(c.chunk_frames())) + " tokens");
  return c;
}

}  // namespace segpipe
