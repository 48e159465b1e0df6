#include "orchestrator/drivers/media_prompt.h"

#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/encoders/vision_config.h"
#include "segments/model/media_placeholders.h"
#include "segments/model/mrope_positions.h"

namespace segpipe {

MediaPrefill prefill_media_prompt(Runner& runner, const ModelConfig& cfg, const std::string& model_dir,
                                  const MediaPrompt& prompt, bool all_logits, BoundaryObserver* obs,
                                  std::vector<float>& logits) {
  const std::string config_path = model_dir + "/config.json";
  const nlohmann::json config = read_json_file(config_path);
  const MediaTokenConfig tok = parse_media_tokens(config, config_path);
  const int64_t H = cfg.hidden;

  // The encoders, in prompt order; their outputs sized as the placeholders count them (the check below
  // refuses a prompt whose placeholders disagree with the media).
  std::vector<ImageGrid> grids;
  std::vector<int64_t> mel_frames;
  int deepstack_levels = 0;
  for (const MediaInput& m : prompt.media) {
    if (m.encoder == SegmentKind::vision_encoder) {
      if (m.grids.size() != 3) throw InputError("an image's grid must be (t, h, w)");
      grids.push_back(ImageGrid{m.grids[0], m.grids[1], m.grids[2]});
      if (deepstack_levels == 0)
        deepstack_levels = static_cast<int>(parse_vision_config(config, config_path).deepstack_visual_indexes.size());
    } else {
      mel_frames.push_back(m.frames);
    }
  }
  const MropePositions pos = mrope_positions(prompt.ids, tok, grids, mel_frames);  // checks the placeholders

  MediaPrefill out;
  std::vector<float> audio_rows, image_rows, deepstack;  // deepstack: [levels][N_v, H], images appended per level
  std::vector<std::vector<float>> deepstack_levels_rows(static_cast<size_t>(deepstack_levels));
  size_t image_i = 0, audio_i = 0;
  for (const MediaInput& m : prompt.media) {
    EncodedMedia e;
    e.width = static_cast<int>(H);
    if (m.encoder == SegmentKind::vision_encoder) {
      e.tokens = image_placeholder_count(grids[image_i++], tok.spatial_merge_size);
      e.levels = 1 + deepstack_levels;
    } else {
      e.tokens = audio_encoder_output_length(mel_frames[audio_i++], tok.audio_n_window);
    }
    runner.encode(m, e);
    const size_t level = static_cast<size_t>(e.tokens * H);
    if (m.encoder == SegmentKind::vision_encoder) {
      image_rows.insert(image_rows.end(), e.rows.begin(), e.rows.begin() + static_cast<std::ptrdiff_t>(level));
      for (int l = 0; l < deepstack_levels; l++) {
        auto from = e.rows.begin() + static_cast<std::ptrdiff_t>((l + 1) * level);
        deepstack_levels_rows[size_t(l)].insert(deepstack_levels_rows[size_t(l)].end(), from,
                                                from + static_cast<std::ptrdiff_t>(level));
      }
    } else {
      audio_rows.insert(audio_rows.end(), e.rows.begin(), e.rows.end());
    }
    out.encoded.push_back(std::move(e));
  }

  const PlacedRows placed = place_media_rows(prompt.ids, tok, audio_rows, image_rows, H);
  const std::vector<int32_t> image_at = placeholder_positions(prompt.ids, tok.image_token_id);
  for (const auto& l : deepstack_levels_rows) deepstack.insert(deepstack.end(), l.begin(), l.end());

  StepMedia sm;
  sm.rope_positions = pos.pos.data();
  sm.rope_delta = 0;  // the prefill's positions are explicit
  sm.embed = MediaRows{placed.index.data(), static_cast<int64_t>(placed.index.size()), placed.rows.data(), 1};
  if (deepstack_levels > 0 && !image_at.empty())
    sm.deepstack = MediaRows{image_at.data(), static_cast<int64_t>(image_at.size()), deepstack.data(), deepstack_levels};
  const int64_t T = static_cast<int64_t>(prompt.ids.size());
  runner.step_media(prompt.ids.data(), T, 0, all_logits, obs, logits, sm);
  out.rope_delta = pos.delta;
  return out;
}

}  // namespace segpipe
