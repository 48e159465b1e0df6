#include "segments/kinds/audio_encoder_segment.h"

#include <algorithm>

#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/encoders/audio_config.h"

namespace segpipe {

AudioEncoderSegment::AudioEncoderSegment(const SegmentParams& params, SegmentEnv& env)
    : Segment(params), pool_(*env.pool) {
  // The tower's settings are not part of the text model's config (a text-only run must not depend on
  // them): read here, where they are needed.
  const std::string path = env.checkpoint->dir() + "/config.json";
  encoder_ = std::make_unique<AudioEncoder>(*env.checkpoint, parse_audio_encoder_config(read_json_file(path), path));
}

void AudioEncoderSegment::step(const StepIO& io) {
  if (!io.encode || !io.encode->in || !io.encode->out)
    throw RuntimeFailure("audio_encoder: a step without its features");
  const std::vector<float> rows = encoder_->forward(io.encode->in, io.encode->frames, pool_);
  if (static_cast<int64_t>(rows.size()) > io.encode->out_floats)
    throw RuntimeFailure("audio_encoder: " + std::to_string(rows.size()) + " output values for room for " +
                         std::to_string(io.encode->out_floats));
  std::copy(rows.begin(), rows.end(), io.encode->out);
}

}  // namespace segpipe
