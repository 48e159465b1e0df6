#include "orchestrator/drivers/media_prompt.h"

#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/encoders/vision_config.h"
#include "segments/model/media_placeholders.h"
#include "segments/model/mrope_positions.h"

namespace segpipe {

PreparedMedia prepare_media_prompt(Runner& runner, const ModelConfig& cfg, const std::string& model_dir,
                                   const MediaPrompt& prompt) {
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

  PreparedMedia prep;
  MediaPrefill& out = prep.prefill;
  std::vector<float> audio_rows, image_rows;
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

  PlacedRows placed = place_media_rows(prompt.ids, tok, audio_rows, image_rows, H);
  prep.ds_index = placeholder_positions(prompt.ids, tok.image_token_id);
  for (const auto& l : deepstack_levels_rows) prep.ds_rows.insert(prep.ds_rows.end(), l.begin(), l.end());
  prep.rope = pos.pos;
  prep.embed_index = std::move(placed.index);
  prep.embed_rows = std::move(placed.rows);

  StepMedia& sm = prep.step;
  sm.rope_positions = prep.rope.data();
  sm.rope_delta = 0;  // the prefill's positions are explicit
  sm.embed = MediaRows{prep.embed_index.data(), static_cast<int64_t>(prep.embed_index.size()), prep.embed_rows.data(), 1};
  if (deepstack_levels > 0 && !prep.ds_index.empty())
    sm.deepstack = MediaRows{prep.ds_index.data(), static_cast<int64_t>(prep.ds_index.size()), prep.ds_rows.data(),
                             deepstack_levels};
  out.rope_delta = pos.delta;
  return prep;
}

MediaPrefill prefill_media_prompt(Runner& runner, const ModelConfig& cfg, const std::string& model_dir,
                                  const MediaPrompt& prompt, bool all_logits, BoundaryObserver* obs,
                                  std::vector<float>& logits) {
  PreparedMedia prep = prepare_media_prompt(runner, cfg, model_dir, prompt);
  runner.step_media(prompt.ids.data(), static_cast<int64_t>(prompt.ids.size()), 0, all_logits, obs, logits, prep.step);
  return std::move(prep.prefill);
}

}  // namespace segpipe
