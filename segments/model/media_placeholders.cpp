#include "segments/model/media_placeholders.h"

#include "segments/core/errors.h"
#include "segments/encoders/audio_lengths.h"

namespace segpipe {

namespace {

int64_t json_int(const nlohmann::json& j, const char* key, int64_t dflt, int64_t lo, int64_t hi,
                 const std::string& where, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  const nlohmann::json& v = j[key];
  // 13.0 is how some writers spell 13; a fractional value is not an id or a count.
  if (!v.is_number() || (v.is_number_float() && v.get<double>() != static_cast<double>(static_cast<int64_t>(v.get<double>()))))
    throw InputError(where + ": " + path + key + " must be an integer");
  int64_t x = v.is_number_float() ? static_cast<int64_t>(v.get<double>()) : v.get<int64_t>();
  if (x < lo || x > hi)
    throw InputError(where + ": " + path + key + " = " + std::to_string(x) + " is out of range [" + std::to_string(lo) +
                     ", " + std::to_string(hi) + "]");
  return x;
}

std::string grid_text(const ImageGrid& g) {
  return "(" + std::to_string(g.t) + ", " + std::to_string(g.h) + ", " + std::to_string(g.w) + ")";
}

}  // namespace

MediaTokenConfig parse_media_tokens(const nlohmann::json& config, const std::string& where) {
  if (!config.is_object() || !config.contains("thinker_config") || !config["thinker_config"].is_object())
    throw InputError(where + ": thinker_config is missing (not a Qwen3-Omni checkpoint: no audio or image input)");
  const nlohmann::json& th = config["thinker_config"];
  const std::string p = "thinker_config.";
  const int64_t id_max = (int64_t{1} << 31) - 1;
  MediaTokenConfig c;
  auto id = [&](const char* key, int32_t dflt) {
    return static_cast<int32_t>(json_int(th, key, dflt, dflt < 0 ? -1 : 0, id_max, where, p));
  };
  c.audio_token_id = id("audio_token_id", c.audio_token_id);
  c.image_token_id = id("image_token_id", c.image_token_id);
  c.video_token_id = id("video_token_id", c.video_token_id);
  c.audio_start_token_id = id("audio_start_token_id", c.audio_start_token_id);
  c.audio_end_token_id = id("audio_end_token_id", c.audio_end_token_id);
  c.vision_start_token_id = id("vision_start_token_id", c.vision_start_token_id);
  c.vision_end_token_id = id("vision_end_token_id", c.vision_end_token_id);
  c.position_id_per_seconds = json_int(th, "position_id_per_seconds", c.position_id_per_seconds, 0, 1 << 20, where, p);
  if (th.contains("vision_config") && th["vision_config"].is_object())
    c.spatial_merge_size = static_cast<int>(
        json_int(th["vision_config"], "spatial_merge_size", c.spatial_merge_size, 1, 64, where, p + "vision_config."));
  if (th.contains("audio_config") && th["audio_config"].is_object())
    c.audio_n_window = static_cast<int>(
        json_int(th["audio_config"], "n_window", c.audio_n_window, 1, 1 << 20, where, p + "audio_config."));
  return c;
}

int64_t audio_encoder_output_length(int64_t mel_frames, int n_window) {
  if (n_window < 1) throw InputError("audio n_window must be >= 1, got " + std::to_string(n_window));
  if (mel_frames < 1 || mel_frames > (int64_t{1} << 40))
    throw InputError("an audio of " + std::to_string(mel_frames) + " feature frames (need at least 1)");
  return audio_placeholder_tokens(mel_frames, n_window);  // the reference's formula (audio_lengths.h)
}

int64_t audio_placeholder_count(int64_t mel_frames) { return audio_encoder_output_length(mel_frames, 50); }

int64_t image_placeholder_count(const ImageGrid& g, int merge) {
  const int64_t lim = int64_t{1} << 20;
  if (g.t < 1 || g.h < 1 || g.w < 1 || g.t > lim || g.h > lim || g.w > lim)
    throw InputError("image grid " + grid_text(g) + " must be positive (at most 2^20 per axis)");
  if (merge < 1 || g.h % merge != 0 || g.w % merge != 0)
    throw InputError("image grid " + grid_text(g) + ": h and w must be multiples of the spatial merge size " +
                     std::to_string(merge));
  return g.t * g.h * g.w / (int64_t{merge} * merge);
}

void check_media_placeholders(std::span<const int32_t> ids, const MediaTokenConfig& tok,
                              std::span<const ImageGrid> images, std::span<const int64_t> audio_mel_frames) {
  if (!images.empty() && tok.vision_start_token_id < 0)
    throw InputError("the checkpoint's thinker_config has no vision_start_token_id: cannot place an image");
  const size_t n = ids.size();
  size_t n_img = 0, n_aud = 0;
  auto run = [&](size_t from, int32_t token) {
    size_t r = 0;
    while (from + r < n && ids[from + r] == token) r++;
    return r;
  };
  for (size_t i = 0; i < n; i++) {
    const int32_t t = ids[i];
    const std::string at = " at prompt position " + std::to_string(i);
    if (t == tok.vision_start_token_id) {
      const int32_t next = i + 1 < n ? ids[i + 1] : -1;
      if (next == tok.video_token_id) throw InputError("video input is not supported (video placeholder" + at + ")");
      if (next == tok.audio_start_token_id)
        throw InputError("audio inside a video block is not supported (<|vision_start|><|audio_start|>" + at + ")");
      if (next != tok.image_token_id) throw InputError("<|vision_start|>" + at + " is not followed by image placeholders");
      const size_t r = run(i + 1, tok.image_token_id);
      if (n_img >= images.size())
        throw InputError("the prompt has more image blocks than the " + std::to_string(images.size()) +
                         " image(s) given (block" + at + ")");
      const int64_t want = image_placeholder_count(images[n_img], tok.spatial_merge_size);
      if (static_cast<int64_t>(r) != want)
        throw InputError("image " + std::to_string(n_img) + " (grid " + grid_text(images[n_img]) + ") needs " +
                         std::to_string(want) + " placeholders, the prompt has " + std::to_string(r) + at);
      n_img++;
      i += r;
    } else if (t == tok.audio_start_token_id) {
      const size_t r = run(i + 1, tok.audio_token_id);
      if (r == 0) throw InputError("<|audio_start|>" + at + " is not followed by audio placeholders");
      if (n_aud >= audio_mel_frames.size())
        throw InputError("the prompt has more audio blocks than the " + std::to_string(audio_mel_frames.size()) +
                         " audio(s) given (block" + at + ")");
      const int64_t want = audio_encoder_output_length(audio_mel_frames[n_aud], tok.audio_n_window);
      if (static_cast<int64_t>(r) != want)
        throw InputError("audio " + std::to_string(n_aud) + " (" + std::to_string(audio_mel_frames[n_aud]) +
                         " feature frames) needs " + std::to_string(want) + " placeholders, the prompt has " +
                         std::to_string(r) + at);
      n_aud++;
      i += r;
    } else if (t == tok.image_token_id || t == tok.audio_token_id) {
      throw InputError(std::string(t == tok.image_token_id ? "an image" : "an audio") + " placeholder" + at +
                       " is outside a <|vision_start|> / <|audio_start|> block");
    } else if (t == tok.video_token_id) {
      throw InputError("video input is not supported (video placeholder" + at + ")");
    }
  }
  if (n_img < images.size())
    throw InputError(std::to_string(images.size()) + " image(s) given but the prompt has " + std::to_string(n_img) +
                     " image block(s) (<|vision_start|><|image_pad|>...)");
  if (n_aud < audio_mel_frames.size())
    throw InputError(std::to_string(audio_mel_frames.size()) + " audio(s) given but the prompt has " +
                     std::to_string(n_aud) + " audio block(s) (<|audio_start|><|audio_pad|>...)");
}

std::vector<int32_t> placeholder_positions(std::span<const int32_t> ids, int32_t token) {
  std::vector<int32_t> out;
  for (size_t i = 0; i < ids.size(); i++)
    if (ids[i] == token) out.push_back(static_cast<int32_t>(i));
  return out;
}

PlacedRows place_media_rows(std::span<const int32_t> ids, const MediaTokenConfig& tok, std::span<const float> audio_rows,
                            std::span<const float> image_rows, int64_t H) {
  if (H < 1 || audio_rows.size() % static_cast<size_t>(H) || image_rows.size() % static_cast<size_t>(H))
    throw InputError("media rows are not whole rows of the hidden size " + std::to_string(H));
  const size_t na = audio_rows.size() / static_cast<size_t>(H), nv = image_rows.size() / static_cast<size_t>(H);
  const size_t pa = placeholder_positions(ids, tok.audio_token_id).size(), pv = placeholder_positions(ids, tok.image_token_id).size();
  if (na != pa || nv != pv)
    throw InputError("the encoders gave " + std::to_string(na) + " audio and " + std::to_string(nv) +
                     " image rows, the prompt has " + std::to_string(pa) + " audio and " + std::to_string(pv) +
                     " image placeholders");
  PlacedRows out;
  out.rows.reserve((na + nv) * static_cast<size_t>(H));
  size_t ai = 0, vi = 0;
  for (size_t t = 0; t < ids.size(); t++) {
    const float* row = nullptr;
    if (ids[t] == tok.audio_token_id) row = audio_rows.data() + H * static_cast<int64_t>(ai++);
    else if (ids[t] == tok.image_token_id) row = image_rows.data() + H * static_cast<int64_t>(vi++);
    if (!row) continue;
    out.index.push_back(static_cast<int32_t>(t));
    out.rows.insert(out.rows.end(), row, row + H);
  }
  return out;
}

}  // namespace segpipe
