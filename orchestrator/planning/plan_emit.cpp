#include "orchestrator/pipeline/pipeline.h"
#include "orchestrator/planning/plan_builder.h"

namespace segpipe {

std::string emit_cut_yaml(const PlannedCut& cut) {
  PipelineSpec s;
  s.model = cut.model;
  SegmentSpec emb;
  emb.name = "embed";
  emb.kind = SegmentKind::embeddings;
  s.segments.push_back(emb);
  for (size_t i = 0; i < cut.groups.size(); i++) {
    SegmentSpec l;
    l.name = "layers-" + std::to_string(i);
    l.kind = SegmentKind::layers;
    l.layers = IndexRange{cut.groups[i].first, cut.groups[i].second};
    if (cut.group_banks[i]) l.placement = ExpertPlacement::banks;
    s.segments.push_back(l);
  }
  for (size_t b = 0; b < cut.banks.size(); b++) {
    SegmentSpec e;
    e.name = "bank-" + std::to_string(b);
    e.kind = SegmentKind::experts;
    e.layers = IndexRange{cut.bank_layer_first, cut.bank_layer_last};
    e.experts = IndexRange{cut.banks[b].first, cut.banks[b].second};
    s.segments.push_back(e);
  }
  SegmentSpec hd;
  hd.name = "head";
  hd.kind = SegmentKind::lm_head;
  s.segments.push_back(hd);
  std::string y = emit_pipeline_yaml(s);
  std::string head = "# segpipe plan: cut balanced by weight bytes\n";
  auto mb = [](uint64_t b) { return std::to_string(b / 1000000) + "." + std::to_string((b / 100000) % 10) + " MB"; };
  head += "#   embed " + mb(cut.embed_bytes) + ", head " + mb(cut.head_bytes) + "\n";
  for (size_t i = 0; i < cut.groups.size(); i++) head += "#   layers-" + std::to_string(i) + " " + mb(cut.group_bytes[i]) + "\n";
  for (size_t b = 0; b < cut.banks.size(); b++) head += "#   bank-" + std::to_string(b) + " " + mb(cut.bank_bytes[b]) + "\n";
  return head + y;
}

}  // namespace segpipe
