#include "segments/kinds/vision_encoder_segment.h"

#include <algorithm>

#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/encoders/vision_config.h"

namespace segpipe {

VisionEncoderSegment::VisionEncoderSegment(const SegmentParams& params, SegmentEnv& env)
    : Segment(params), pool_(*env.pool) {
  // Read here, not with the text model's config: a text-only run must not depend on the tower's settings.
  const std::string path = env.checkpoint->dir() + "/config.json";
  const VisionEncoderConfig cfg = parse_vision_config(read_json_file(path), path);
  encoder_ = std::make_unique<VisionEncoder>(*env.checkpoint, cfg, cfg.tensor_prefix);
}

void VisionEncoderSegment::step(const StepIO& io) {
  const EncoderIO* e = io.encode;
  if (!e || !e->in || !e->out || !e->grids || e->n_grids < 1)
    throw RuntimeFailure("vision_encoder: a step without its pixel values and grids");
  std::vector<VisionGrid> grids(static_cast<size_t>(e->n_grids));
  for (int64_t i = 0; i < e->n_grids; i++)
    grids[size_t(i)] = VisionGrid{e->grids[3 * i], e->grids[3 * i + 1], e->grids[3 * i + 2]};
  const VisionEncoderOutput r = encoder_->forward(e->in, e->frames, grids, pool_);
  size_t n = r.merged.size();
  for (const std::vector<float>& level : r.deepstack) n += level.size();
  if (static_cast<int64_t>(n) > e->out_floats)
    throw RuntimeFailure("vision_encoder: " + std::to_string(n) + " output values for room for " +
                         std::to_string(e->out_floats));
  float* out = std::copy(r.merged.begin(), r.merged.end(), e->out);
  for (const std::vector<float>& level : r.deepstack) out = std::copy(level.begin(), level.end(), out);
}

}  // namespace segpipe
