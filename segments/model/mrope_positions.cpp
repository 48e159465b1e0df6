#include "segments/model/mrope_positions.h"

#include <algorithm>
#include <limits>

#include "segments/core/errors.h"

namespace segpipe {

namespace {

// The reference's list of position blocks; st_idx always reads the largest value of the LAST block
// (over its three rows), so each block remembers its own maximum.
struct Blocks {
  std::vector<int64_t> t, h, w;
  int64_t last_max = -1;
  bool empty() const { return t.empty(); }
  int64_t next() const { return empty() ? 0 : last_max + 1; }
  void add_run(int64_t len, int64_t start) {  // arange(len) + start on all three rows
    for (int64_t i = 0; i < len; i++) {
      t.push_back(start + i);
      h.push_back(start + i);
      w.push_back(start + i);
    }
    if (len > 0) last_max = start + len - 1;
  }
};

size_t find_from(std::span<const int32_t> ids, int32_t token, size_t from) {
  for (size_t i = from; i < ids.size(); i++)
    if (ids[i] == token) return i;
  throw InputError("get_rope_index: no token " + std::to_string(token) + " after prompt position " + std::to_string(from));
}

bool contains(std::span<const int32_t> ids, int32_t token) { return std::find(ids.begin(), ids.end(), token) != ids.end(); }

}  // namespace

MropePositions mrope_positions(std::span<const int32_t> ids, const MediaTokenConfig& tok,
                               std::span<const ImageGrid> images, std::span<const int64_t> audio_mel_frames) {
  check_media_placeholders(ids, tok, images, audio_mel_frames);
  const int64_t T = static_cast<int64_t>(ids.size());
  MropePositions r;
  r.T = T;
  r.pos.resize(static_cast<size_t>(3 * T));
  if (images.empty()) {
    // The reference's branch without image or video grids: attention_mask.cumsum - 1 on every axis.
    for (int a = 0; a < 3; a++)
      for (int64_t t = 0; t < T; t++) r.pos[static_cast<size_t>(a * T + t)] = static_cast<int32_t>(t);
    r.delta = 0;
    return r;
  }
  // Counts as the reference takes them: audios by their start tokens, images by the token after each
  // vision start (check_media_placeholders made every vision start an image block).
  int64_t audio_nums = 0, image_nums = 0;
  for (size_t i = 0; i < ids.size(); i++) {
    if (ids[i] == tok.audio_start_token_id) audio_nums++;
    if (ids[i] == tok.vision_start_token_id && i + 1 < ids.size() && ids[i + 1] == tok.image_token_id) image_nums++;
  }
  const bool has_image_pad = contains(ids, tok.image_token_id), has_audio_pad = contains(ids, tok.audio_token_id);
  const int64_t merge = tok.spatial_merge_size;
  Blocks b;
  size_t st = 0;
  int64_t remain_images = image_nums, remain_audios = audio_nums;
  size_t image_idx = 0, audio_idx = 0;
  const size_t none = ids.size() + 1;
  for (int64_t m = 0; m < image_nums + audio_nums; m++) {
    int64_t st_idx = b.next();
    const size_t ed_vision = (has_image_pad && remain_images > 0) ? find_from(ids, tok.vision_start_token_id, st) : none;
    const size_t ed_audio = (has_audio_pad && remain_audios > 0) ? find_from(ids, tok.audio_start_token_id, st) : none;
    const size_t min_ed = std::min(ed_vision, ed_audio);
    if (min_ed >= ids.size()) throw InputError("get_rope_index: fewer media blocks in the prompt than counted");
    const int64_t text_len = static_cast<int64_t>(min_ed - st);
    if (text_len != 0) {
      b.add_run(text_len, st_idx);
      st_idx += text_len;
    }
    b.add_run(1, st_idx);  // the start token (bos_len 1: audio-in-video, bos_len 2, was refused)
    st_idx += 1;
    if (min_ed == ed_audio) {
      const int64_t len = audio_encoder_output_length(audio_mel_frames[audio_idx], tok.audio_n_window);
      b.add_run(len, st_idx);
      st += static_cast<size_t>(text_len + 1 + len + 1);
      audio_idx++;
      remain_audios--;
    } else {
      const ImageGrid& g = images[image_idx];
      const int64_t gh = g.h / merge, gw = g.w / merge;
      int64_t mx = std::numeric_limits<int64_t>::min();
      for (int64_t ti = 0; ti < g.t; ti++) {
        // t_index = arange(grid_t) * 1 * position_id_per_seconds (an image's frames are one second apart)
        const int64_t tp = ti * tok.position_id_per_seconds + st_idx;
        for (int64_t hi = 0; hi < gh; hi++)
          for (int64_t wi = 0; wi < gw; wi++) {
            b.t.push_back(tp);
            b.h.push_back(hi + st_idx);
            b.w.push_back(wi + st_idx);
            mx = std::max({mx, tp, hi + st_idx, wi + st_idx});
          }
      }
      b.last_max = mx;
      st += static_cast<size_t>(text_len + 1 + image_placeholder_count(g, tok.spatial_merge_size) + 1);
      image_idx++;
      remain_images--;
    }
    b.add_run(1, b.next());  // the end token
  }
  if (st < ids.size()) b.add_run(static_cast<int64_t>(ids.size() - st), b.next());
  if (static_cast<int64_t>(b.t.size()) != T)
    throw InputError("get_rope_index: the media blocks give " + std::to_string(b.t.size()) +
                     " positions for a prompt of " + std::to_string(T) + " tokens");
  int64_t mx = 0;
  for (const auto* row : {&b.t, &b.h, &b.w})
    for (int64_t v : *row) {
      if (v > std::numeric_limits<int32_t>::max()) throw InputError("M-RoPE position beyond int32");
      mx = std::max(mx, v);
    }
  for (int64_t t = 0; t < T; t++) {
    r.pos[static_cast<size_t>(t)] = static_cast<int32_t>(b.t[static_cast<size_t>(t)]);
    r.pos[static_cast<size_t>(T + t)] = static_cast<int32_t>(b.h[static_cast<size_t>(t)]);
    r.pos[static_cast<size_t>(2 * T + t)] = static_cast<int32_t>(b.w[static_cast<size_t>(t)]);
  }
  r.delta = mx + 1 - T;
  return r;
}

}  // namespace segpipe
