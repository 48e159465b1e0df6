#include "orchestrator/drivers/segment_roles.h"

#include "segments/model/tensor_map.h"

namespace segpipe {

namespace {

// The roles a segment loads (what its kind holds: the same split make_segment's makers load).
std::vector<TensorRole> segment_roles(Checkpoint& ck, const ModelConfig& cfg, const SegmentDesc& d) {
  std::vector<TensorRole> r;
  auto experts = [&](int l0, int l1, int e0, int e1) {
    for (int l = l0; l <= l1; l++) {
      if (!cfg.is_moe_layer(l)) continue;
      ExpertLayout lay = expert_layout(ck, cfg, l);
      for (int e = e0; e <= e1; e++) {
        for (auto& x : expert_roles(cfg, l, e, lay)) r.push_back(x);
        if (lay == ExpertLayout::Fused) break;
      }
    }
  };
  switch (d.kind) {
    case SegmentKind::embeddings: r.push_back(embed_role(cfg)); break;
    case SegmentKind::lm_head:
      r = lm_head_roles(cfg);
      if (cfg.tie_word_embeddings) r.push_back(embed_role(cfg));
      break;
    case SegmentKind::experts: experts(d.layer_first, d.layer_last, d.expert_first, d.expert_last); break;
    case SegmentKind::layers:
      for (int l = d.layer_first; l <= d.layer_last; l++)
        for (auto& x : layer_roles(cfg, l)) r.push_back(x);
      if (!d.banks) experts(d.layer_first, d.layer_last, 0, cfg.num_experts - 1);
      break;
    // An encoder checks its own tensors against its tower's config when it loads (shapes the text
    // model's config does not describe), naming the tensor.
    case SegmentKind::audio_encoder:
    case SegmentKind::vision_encoder: break;
  }
  return r;
}

}  // namespace

void check_segment_roles(Checkpoint& ck, const ModelConfig& cfg, const RunPlan& plan) {
  for (const SegmentDesc& d : plan.segments) check_roles(ck, segment_roles(ck, cfg, d));
}

}  // namespace segpipe
