#include "orchestrator/debugging/golden_media.h"

#include <cstring>

#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/core/tensor.h"
#include "segments/model/media_placeholders.h"

namespace segpipe {

namespace {

// A tensor of the golden, checked: its dtype, its rank, and each dimension within [1, limit].
struct Reader {
  SafetensorsFile& f;
  const std::string& path;
  const TensorEntry& entry(const std::string& name, DType dt, size_t rank) {
    const TensorEntry& e = f.header().tensors.at(name);
    if (e.dtype != dt || e.shape.size() != rank)
      throw InputError(path + ": tensor '" + name + "' must be " + dtype_name(dt) + " of rank " + std::to_string(rank) +
                       ", got " + dtype_name(e.dtype) + " " + shape_str(e.shape));
    for (int64_t d : e.shape)
      if (d < 1 || d > (int64_t{1} << 31))
        throw InputError(path + ": tensor '" + name + "' has shape " + shape_str(e.shape));
    return e;
  }
  std::vector<float> floats(const std::string& name, const std::vector<int64_t>& want) {
    const TensorEntry& e = entry(name, DType::F32, want.size());
    if (e.shape != want)
      throw InputError(path + ": tensor '" + name + "' has shape " + shape_str(e.shape) + ", expected " + shape_str(want));
    TensorView v = f.view(name);
    std::vector<float> out(static_cast<size_t>(v.numel()));
    if (!out.empty()) std::memcpy(out.data(), v.data, out.size() * 4);
    return out;
  }
  std::vector<int64_t> ints(const std::string& name, size_t rank) {
    entry(name, DType::I64, rank);
    TensorView v = f.view(name);
    std::vector<int64_t> out(static_cast<size_t>(v.numel()));
    if (!out.empty()) std::memcpy(out.data(), v.data, out.size() * 8);
    return out;
  }
};

}  // namespace

bool is_media_golden_tensor(const std::string& name) {
  for (const char* p : {"audio.", "image.", "audio_tower.", "visual."})
    if (name.rfind(p, 0) == 0) return true;
  return name == "visual_positions" || name == "position_ids" || name == "rope_deltas" || name == "token_embeddings" ||
         (name.rfind("layers.", 0) == 0 && name.size() > 25 &&
          name.compare(name.size() - 25, 25, ".output_before_deepstack") == 0);
}

GoldenMedia load_golden_media(SafetensorsFile& f, const std::string& path, const ModelConfig& cfg, int64_t T) {
  GoldenMedia m;
  Reader r{f, path};
  const int64_t H = cfg.hidden;
  if (f.has("audio.input_features")) {
    const TensorEntry& e = r.entry("audio.input_features", DType::F32, 3);
    const int64_t A = e.shape[0], M = e.shape[1], F = e.shape[2];
    const std::vector<float> all = r.floats("audio.input_features", {A, M, F});
    if (!f.has("audio.feature_lens")) throw InputError(path + ": audio.input_features without audio.feature_lens");
    const std::vector<int64_t> lens = r.ints("audio.feature_lens", 1);
    if (static_cast<int64_t>(lens.size()) != A)
      throw InputError(path + ": audio.feature_lens holds " + std::to_string(lens.size()) + " lengths for " +
                       std::to_string(A) + " audios");
    for (int64_t a = 0; a < A; a++) {
      const int64_t n = lens[size_t(a)];
      if (n < 1 || n > F)
        throw InputError(path + ": audio.feature_lens[" + std::to_string(a) + "] = " + std::to_string(n) +
                         " is outside [1, " + std::to_string(F) + "]");
      // The tower takes the valid frames only (the reference's input_features[feature_attention_mask]).
      std::vector<float> x(static_cast<size_t>(M * n));
      for (int64_t k = 0; k < M; k++)
        std::memcpy(x.data() + k * n, all.data() + (a * M + k) * F, static_cast<size_t>(n) * 4);
      m.audio_features.push_back(std::move(x));
      m.audio_frames.push_back(n);
    }
  }
  if (f.has("image.pixel_values")) {
    const TensorEntry& e = r.entry("image.pixel_values", DType::F32, 2);
    const int64_t P = e.shape[0], D = e.shape[1];
    const std::vector<float> all = r.floats("image.pixel_values", {P, D});
    if (!f.has("image.grid_thw")) throw InputError(path + ": image.pixel_values without image.grid_thw");
    const std::vector<int64_t> g = r.ints("image.grid_thw", 2);
    if (g.size() % 3 != 0) throw InputError(path + ": image.grid_thw must be [images, 3]");
    int64_t at = 0;
    for (size_t i = 0; i < g.size(); i += 3) {
      if (g[i] < 1 || g[i + 1] < 1 || g[i + 2] < 1 || g[i] * g[i + 1] * g[i + 2] > P - at)
        throw InputError(path + ": image.grid_thw row " + std::to_string(i / 3) + " does not fit the " +
                         std::to_string(P) + " patches of image.pixel_values");
      const int64_t n = g[i] * g[i + 1] * g[i + 2];
      m.image_pixels.emplace_back(all.begin() + at * D, all.begin() + (at + n) * D);
      m.image_grids.push_back({static_cast<int32_t>(g[i]), static_cast<int32_t>(g[i + 1]), static_cast<int32_t>(g[i + 2])});
      at += n;
    }
    if (at != P) throw InputError(path + ": image.grid_thw covers " + std::to_string(at) + " of " + std::to_string(P) + " patches");
  }
  for (const auto& [name, e] : f.header().tensors) {
    const bool output = name == "audio_tower.output" || name == "visual.output" || name.rfind("visual.deepstack.", 0) == 0;
    if (!output) continue;
    if (e.shape.size() != 2 || e.shape[1] != H)
      throw InputError(path + ": tensor '" + name + "' has shape " + shape_str(e.shape) + ", expected [rows, " +
                       std::to_string(H) + "]");
    m.outputs[name] = r.floats(name, e.shape);
  }
  if (f.has("position_ids")) {
    m.position_ids = r.ints("position_ids", 2);
    if (static_cast<int64_t>(m.position_ids.size()) != 3 * T)
      throw InputError(path + ": position_ids must be [3, " + std::to_string(T) + "]");
  }
  if (f.has("rope_deltas")) {
    const TensorEntry& e = f.header().tensors.at("rope_deltas");
    if (e.dtype != DType::I64 || e.shape.empty() || e.end - e.begin != 8)
      throw InputError(path + ": rope_deltas must be one I64");
    TensorView v = f.view("rope_deltas");
    std::memcpy(&m.rope_delta, v.data, 8);
    m.has_rope_delta = true;
  }
  return m;
}

MediaPrompt golden_media_prompt(const std::vector<int32_t>& ids, const GoldenMedia& m, const std::string& model_dir) {
  const std::string config_path = model_dir + "/config.json";
  const MediaTokenConfig tok = parse_media_tokens(read_json_file(config_path), config_path);
  MediaPrompt p;
  p.ids = ids;
  // The media in the order their blocks start in the prompt (the reference scatters each kind in order).
  size_t a = 0, i = 0;
  for (size_t t = 0; t < ids.size(); t++) {
    if (ids[t] == tok.audio_start_token_id && a < m.audio_features.size()) {
      p.media.push_back({SegmentKind::audio_encoder, m.audio_features[a], m.audio_frames[a], {}});
      a++;
    } else if (ids[t] == tok.vision_start_token_id && i < m.image_pixels.size()) {
      const auto& g = m.image_grids[i];
      p.media.push_back({SegmentKind::vision_encoder, m.image_pixels[i], int64_t{g[0]} * g[1] * g[2], g});
      i++;
    }
  }
  if (a != m.audio_features.size() || i != m.image_pixels.size())
    throw InputError("the golden's prompt has " + std::to_string(a) + " audio and " + std::to_string(i) +
                     " image blocks for " + std::to_string(m.audio_features.size()) + " audios and " +
                     std::to_string(m.image_pixels.size()) + " images");
  return p;
}

}  // namespace segpipe
