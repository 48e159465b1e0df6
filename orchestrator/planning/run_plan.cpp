#include "orchestrator/planning/run_plan.h"

#include <algorithm>
#include <thread>

namespace segpipe {

int default_threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

RunPlan default_plan(const std::string& model_dir, const ModelConfig& cfg) {
  RunPlan p;
  p.model_dir = model_dir;
  p.tokenizer_dir = model_dir;
  p.source = model_dir;
  p.threads = default_threads();
  p.segments.push_back({"embed", SegmentKind::embeddings});
  SegmentDesc l{"layers", SegmentKind::layers};
  l.layer_first = 0;
  l.layer_last = cfg.num_layers - 1;
  p.segments.push_back(l);
  p.segments.push_back({"head", SegmentKind::lm_head});
  if (cfg.max_position > 0) p.max_seq = std::min<int64_t>(p.max_seq, cfg.max_position);
  return p;
}

}  // namespace segpipe
