#include "orchestrator/drivers/shm_media_sizes.h"

#include <algorithm>

#include "segments/checkpoint/checkpoint.h"
#include "segments/encoders/audio_config.h"
#include "segments/encoders/audio_lengths.h"
#include "segments/encoders/vision_config.h"

namespace segpipe {

MediaSizes media_sizes(const RunPlan& plan, int host) {
  MediaSizes m;
  for (const SegmentDesc& d : plan.segments) m.step |= is_encoder(d.kind);
  if (!m.step) return m;
  const std::string path = plan.model_dir + "/config.json";
  const nlohmann::json config = read_json_file(path);
  const int64_t S = std::max<int64_t>(1, plan.max_seq);
  for (const SegmentDesc& d : plan.segments) {
    if (d.kind == SegmentKind::vision_encoder) {
      const VisionEncoderConfig v = parse_vision_config(config, path);
      m.deepstack_levels = static_cast<int>(v.deepstack_visual_indexes.size());
      if (d.host != host) continue;
      // Every image gives at least one token, and each token merges merge_unit() patches.
      MediaSizes::Encoder& e = m.encoders[d.kind];
      e.in_width = v.patch_dim();
      e.in_floats = S * v.merge_unit() * e.in_width;
      e.grids = S;
      e.out_floats = (1 + m.deepstack_levels) * S * v.out_hidden_size;
    } else if (d.kind == SegmentKind::audio_encoder && d.host == host) {
      // Each full chunk of 2 * n_window frames gives audio_conv_length of it in tokens: at most
      // S / that full chunks fit the context, and one partial chunk more.
      const AudioEncoderConfig a = parse_audio_encoder_config(config, path);
      const int64_t chunk = a.chunk_frames(), per_chunk = std::max<int64_t>(1, audio_conv_length(chunk));
      MediaSizes::Encoder& e = m.encoders[d.kind];
      e.in_width = a.num_mel_bins;
      e.in_floats = a.num_mel_bins * (S / per_chunk + 1) * chunk;
      e.out_floats = S * a.output_dim;
    }
  }
  return m;
}

}  // namespace segpipe
