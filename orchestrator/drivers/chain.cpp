#include "orchestrator/drivers/chain.h"

namespace segpipe {

std::vector<Stage> chain_of(const std::vector<SegmentDesc>& segments) {
  std::vector<Stage> chain;
  Port prev = Port::ids();
  for (size_t i = 0; i < segments.size(); i++) {
    const SegmentDesc& d = segments[i];
    Stage s;
    s.segment = static_cast<int>(i);
    switch (d.kind) {
      case SegmentKind::experts: continue;
      // Encoders run on a prompt's media before its step (their rows reach the embeddings and layers
      // segments through the step's media), not in the token chain.
      case SegmentKind::audio_encoder:
      case SegmentKind::vision_encoder: continue;
      case SegmentKind::embeddings: s.in = Port::ids(); s.out = Port::hidden(Boundary::embeddings()); break;
      case SegmentKind::layers: s.in = prev; s.out = Port::hidden(Boundary::output(d.layer_last)); break;
      case SegmentKind::lm_head: s.in = prev; s.out = Port::logits(); break;
    }
    prev = s.out;
    chain.push_back(s);
  }
  return chain;
}

}  // namespace segpipe
