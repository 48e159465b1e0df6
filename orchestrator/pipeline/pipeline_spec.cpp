#include "orchestrator/pipeline/pipeline_spec.h"

namespace segpipe {

const char* to_string(SegmentKind kind) {
  switch (kind) {
    case SegmentKind::embeddings:
      return "embeddings";
    case SegmentKind::layers:
      return "layers";
    case SegmentKind::experts:
      return "experts";
    case SegmentKind::lm_head:
      return "lm_head";
  }
  return "?";
}

const char* to_string(Transport transport) { return transport == Transport::shm ? "shm" : "inproc"; }
const char* to_string(ComputeDType dtype) { return dtype == ComputeDType::float32 ? "float32" : "bfloat16"; }
const char* to_string(ExpertPlacement placement) { return placement == ExpertPlacement::local ? "local" : "banks"; }
std::string to_string(const Device& device) {
  return device.type == Device::Type::cpu ? "cpu" : "cuda:" + std::to_string(device.index);
}

}  // namespace segpipe
