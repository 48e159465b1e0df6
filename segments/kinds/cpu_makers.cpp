#include "segments/kinds/cpu_makers.h"

#include "segments/core/errors.h"
#include "segments/kinds/audio_encoder_segment.h"
#include "segments/kinds/embeddings.h"
#include "segments/kinds/experts.h"
#include "segments/kinds/layers.h"
#include "segments/kinds/lm_head.h"
#include "segments/kinds/vision_encoder_segment.h"

namespace segpipe {

namespace {

template <class S>
std::unique_ptr<Segment> make_cpu(const SegmentParams& params, SegmentEnv& env) {
  SEGPIPE_ASSERT_MSG(env.cfg && env.checkpoint && env.pool, "a CPU segment needs a config, a checkpoint and threads");
  // The plan refuses it with the segment's name (planning/pipeline_to_plan.cpp); a spec or a test that
  // did not come through a plan is refused here.
  if (params.dtype != ComputeDType::float32)
    throw InputError(std::string("segment kind '") + to_string(params.kind) + "' on device 'cpu': compute dtype " +
                     to_string(params.dtype) + " is only implemented on the CUDA backend; the CPU computes in float32");
  return std::make_unique<S>(params, env);
}

constexpr SegmentMaker kCpuMakers[] = {
    {SegmentKind::embeddings, make_cpu<EmbeddingsSegment>},
    {SegmentKind::layers, make_cpu<LayersSegment>},
    {SegmentKind::experts, make_cpu<ExpertsSegment>},
    {SegmentKind::lm_head, make_cpu<LmHeadSegment>},
    {SegmentKind::audio_encoder, make_cpu<AudioEncoderSegment>},
    {SegmentKind::vision_encoder, make_cpu<VisionEncoderSegment>},
};

}  // namespace

std::span<const SegmentMaker> cpu_segment_makers() { return kCpuMakers; }

}  // namespace segpipe
