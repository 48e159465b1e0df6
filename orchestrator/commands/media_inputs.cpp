#include "orchestrator/commands/media_inputs.h"

#include <filesystem>

#include "media/audio/audio_features.h"
#include "media/image/image_decode.h"
#include "media/image/image_processor.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/encoders/audio_config.h"
#include "segments/encoders/vision_config.h"
#include "segments/model/media_placeholders.h"

namespace segpipe {

namespace {

// preprocessor_config.json where the checkpoint has one (an empty object otherwise: the defaults).
nlohmann::json preprocessor_json(const std::string& model_dir, std::string& path) {
  path = model_dir + "/preprocessor_config.json";
  return std::filesystem::exists(path) ? read_json_file(path) : nlohmann::json::object();
}

MediaInput audio_input(const std::string& file, const nlohmann::json& config, const std::string& config_path,
                       const nlohmann::json& pre, const std::string& pre_path) {
  const AudioEncoderConfig ac = parse_audio_encoder_config(config, config_path);
  LogMelParams p;
  p.n_mels = ac.num_mel_bins;
  auto int_key = [&](const char* key, int& v) {
    if (!pre.contains(key)) return;
    if (!pre[key].is_number_integer() || pre[key].get<int64_t>() < 1 || pre[key].get<int64_t>() > (1 << 20))
      throw InputError(pre_path + ": " + key + " must be a positive integer");
    v = pre[key].get<int>();
  };
  int feature_size = p.n_mels;
  int_key("feature_size", feature_size);
  int_key("sampling_rate", p.sample_rate);
  int_key("hop_length", p.hop_length);
  int_key("n_fft", p.n_fft);
  if (feature_size != ac.num_mel_bins)
    throw InputError(pre_path + ": feature_size " + std::to_string(feature_size) + " differs from the audio tower's "
                     "num_mel_bins " + std::to_string(ac.num_mel_bins) + " (" + config_path + ")");
  const LogMelFeatures f = audio_file_features(file, p);
  return MediaInput{SegmentKind::audio_encoder, f.data, f.frames, {}};
}

MediaInput image_input(const std::string& file, const nlohmann::json& config, const std::string& config_path,
                       const nlohmann::json& pre, const std::string& pre_path) {
  const VisionEncoderConfig vc = parse_vision_config(config, config_path);
  media::ImageProcessorConfig defaults = media::qwen3_omni_image_processor_config();
  // The tower's patch geometry is the model's; a preprocessor_config.json must agree with it.
  defaults.patch_size = vc.patch_size;
  defaults.merge_size = vc.spatial_merge_size;
  defaults.temporal_patch_size = vc.temporal_patch_size;
  const media::ImageProcessorConfig ic = media::image_processor_config_from_json(pre, pre_path, defaults);
  if (ic.patch_size != vc.patch_size || ic.merge_size != vc.spatial_merge_size ||
      ic.temporal_patch_size != vc.temporal_patch_size)
    throw InputError(pre_path + ": patch_size / merge_size / temporal_patch_size differ from the vision tower's (" +
                     config_path + ")");
  const media::ProcessedImage img = media::preprocess_image(media::decode_image_file(file), ic, file);
  return MediaInput{SegmentKind::vision_encoder, img.pixel_values, img.num_patches(),
                    {static_cast<int32_t>(img.grid_t), static_cast<int32_t>(img.grid_h), static_cast<int32_t>(img.grid_w)}};
}

}  // namespace

std::vector<MediaInput> load_media_args(const Args& args, const std::string& model_dir) {
  std::vector<MediaInput> out;
  const std::string config_path = model_dir + "/config.json";
  nlohmann::json config, pre;
  std::string pre_path;
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    const bool audio = a == "--audio" || a.rfind("--audio=", 0) == 0;
    const bool image = a == "--image" || a.rfind("--image=", 0) == 0;
    if (!audio && !image) continue;
    std::string file;
    if (a.find('=') != std::string::npos) {
      file = a.substr(a.find('=') + 1);
    } else if (i + 1 < args.size()) {
      file = args[++i];
    }
    if (file.empty()) throw InputError(std::string("generate: ") + (audio ? "--audio" : "--image") + " needs a file");
    if (config.is_null()) {
      config = read_json_file(config_path);
      pre = preprocessor_json(model_dir, pre_path);
    }
    out.push_back(audio ? audio_input(file, config, config_path, pre, pre_path)
                        : image_input(file, config, config_path, pre, pre_path));
  }
  return out;
}

std::vector<int32_t> insert_media_blocks(const std::vector<int32_t>& ids, size_t at,
                                         const std::vector<MediaInput>& media, const std::string& model_dir) {
  const std::string config_path = model_dir + "/config.json";
  const MediaTokenConfig tok = parse_media_tokens(read_json_file(config_path), config_path);
  std::vector<int32_t> block;
  for (const MediaInput& m : media) {
    const bool audio = m.encoder == SegmentKind::audio_encoder;
    const int32_t start = audio ? tok.audio_start_token_id : tok.vision_start_token_id;
    const int32_t end = audio ? tok.audio_end_token_id : tok.vision_end_token_id;
    if (start < 0 || end < 0)
      throw InputError(config_path + ": thinker_config has no " + (audio ? "audio" : "vision") +
                       " start/end token ids for " + (audio ? "audio" : "image") + " inputs");
    // The processor's count (audio: its fixed 100-frame chunks; the tower must agree, which the
    // placeholder check before the prefill enforces).
    const int64_t n = audio ? audio_placeholder_count(m.frames)
                            : image_placeholder_count(ImageGrid{m.grids[0], m.grids[1], m.grids[2]}, tok.spatial_merge_size);
    block.push_back(start);
    block.insert(block.end(), static_cast<size_t>(n), audio ? tok.audio_token_id : tok.image_token_id);
    block.push_back(end);
  }
  std::vector<int32_t> out(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(at));
  out.insert(out.end(), block.begin(), block.end());
  out.insert(out.end(), ids.begin() + static_cast<std::ptrdiff_t>(at), ids.end());
  return out;
}

}  // namespace segpipe
