// Where a Qwen3-Omni prompt's audio and image rows go: the thinker's media token ids, the number of
// placeholder tokens each medium takes (computed as transformers' processor and model compute them), and
// the check that a prompt's placeholders and the media given agree. A mismatch is bad input: the
// reference refuses it (images) or scatters rows into the wrong tokens (audio), so we refuse it too.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

namespace segpipe {

// From config.json's thinker_config (and its vision/audio sub-configs). Absent keys take the default of
// transformers' Qwen3OmniMoeThinkerConfig where it has one; -1 where it has none.
struct MediaTokenConfig {
  int32_t audio_token_id = 151646;        // <|audio_pad|>
  int32_t image_token_id = 151655;        // <|image_pad|>
  int32_t video_token_id = 151656;        // <|video_pad|>
  int32_t audio_start_token_id = 151647;  // <|audio_start|>
  int32_t audio_end_token_id = -1;        // <|audio_end|>
  int32_t vision_start_token_id = -1;     // <|vision_start|>
  int32_t vision_end_token_id = -1;       // <|vision_end|>
  int64_t position_id_per_seconds = 25;   // M-RoPE time step per second of video (an image has one frame: 0)
  int spatial_merge_size = 2;             // vision_config: patches merged per side into one token
  int audio_n_window = 50;                // audio_config.n_window: the tower works in chunks of 2 * n_window frames
};

// Reads the thinker's media settings from a whole config.json; `where` names the file in errors. Throws
// InputError for a key of the wrong type or out of range, or for a config without thinker_config.
MediaTokenConfig parse_media_tokens(const nlohmann::json& config, const std::string& where);

// One image's patch grid (t, h, w), as the image processor's image_grid_thw gives it.
struct ImageGrid {
  int64_t t = 0, h = 0, w = 0;
};

// Tokens the audio tower gives for `mel_frames` feature frames with the model's n_window (transformers'
// modeling _get_feat_extract_output_lengths: three stride-2 convolutions per chunk of 2 * n_window frames).
// Throws InputError for mel_frames < 1 or an n_window < 1.
int64_t audio_encoder_output_length(int64_t mel_frames, int n_window);
// Placeholders the processor writes for `mel_frames` (its _get_feat_extract_output_lengths, which
// hard-codes 100-frame chunks: the real model's n_window 50).
int64_t audio_placeholder_count(int64_t mel_frames);
// Placeholders for one image: t * h * w / merge^2 (the processor's grid.prod() // merge_size**2). Throws
// InputError for a grid that is not positive or whose h or w is not a multiple of merge.
int64_t image_placeholder_count(const ImageGrid& g, int merge);

// Checks that `ids` holds, in order, one <|vision_start|> followed by exactly image_placeholder_count
// image pads per image, and one <|audio_start|> followed by exactly audio_encoder_output_length pads per
// audio (the layout get_rope_index assumes), no pad outside such a block and no video pad. Throws
// InputError naming what disagrees (e.g. more images than image blocks in the prompt).
void check_media_placeholders(std::span<const int32_t> ids, const MediaTokenConfig& tok,
                              std::span<const ImageGrid> images, std::span<const int64_t> audio_mel_frames);

// Prompt positions of `token` in ids, ascending: where the rows of that medium are scattered (the
// reference's masked_scatter fills them in order), and for images the DeepStack positions.
std::vector<int32_t> placeholder_positions(std::span<const int32_t> ids, int32_t token);

// The encoders' rows in the order StepIO::media takes them: every placeholder position ascending, with
// the next audio row (audio_rows: all audios' tower outputs in prompt order, [N_a, H]) at an audio
// placeholder and the next image row (image_rows: [N_v, H]) at an image placeholder. Throws InputError
// when the row counts and the placeholders disagree.
struct PlacedRows {
  std::vector<int32_t> index;
  std::vector<float> rows;  // [index.size(), H]
};
PlacedRows place_media_rows(std::span<const int32_t> ids, const MediaTokenConfig& tok, std::span<const float> audio_rows,
                            std::span<const float> image_rows, int64_t H);

}  // namespace segpipe
