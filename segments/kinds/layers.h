// Segment kind `layers`: decoder layers [a, b] — norms, attention with its KV cache, router, dense
// MLPs, and the routed experts unless they live in expert banks (then an ExpertExecutor reaches
// them). The KV cache is storage the caller provides (the shared arena across processes, so a
// restarted segment process finds its cache intact) or, where it provides none, the segment's own.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "segments/core/boundary_observer.h"
#include "segments/core/segment.h"
#include "segments/factory/segment_env.h"
#include "segments/kinds/experts.h"
#include "segments/kernels/cpu/rope.h"
#include "segments/kernels/cpu/linear.h"
#include "segments/model/tensor_map.h"

namespace segpipe {

// Where a layer's routed experts are computed: locally, or in bank segments (in-process or remote).
// Buffers an executor may hand to the layer so that the normalized states, the routes and the
// expert outputs are written where the banks read and write them (shared memory), with no copy.
struct ExpertStaging {
  float* x = nullptr;          // [T, H]
  int32_t* experts = nullptr;  // [T, k]
  float* weights = nullptr;    // [T, k]
  float* slots = nullptr;      // [T * k, H]
};

class ExpertExecutor {
 public:
  virtual ~ExpertExecutor() = default;
  virtual ExpertStaging staging(int64_t T, int k) { return {}; }
  // Must fill every row of req.slots (all T*k slots) with the weighted expert outputs.
  virtual void run(const ExpertRequest& req) = 0;
};

// Runs a request on a set of in-process banks that together own every expert.
class BankedExperts : public ExpertExecutor {
 public:
  explicit BankedExperts(std::vector<ExpertBank*> banks) : banks_(std::move(banks)) {}
  void run(const ExpertRequest& req) override;

 private:
  std::vector<ExpertBank*> banks_;
};

struct KvLayer {
  float* k = nullptr;  // [max_seq, kv_dim]
  float* v = nullptr;  // [max_seq, kv_dim]
};

class LayersSegment : public Segment {
 public:
  // params: the layer range; banks: the routed experts live in banks, reached through env.experts
  // (else this segment binds its own, selectively loaded when max_resident_experts > 0: see experts.h).
  // env: max_seq positions of KV cache, in env.kv or allocated here.
  LayersSegment(const SegmentParams& params, SegmentEnv& env);
  ~LayersSegment() override;
  // Floats of KV cache one layer needs for max_seq positions (K and V).
  static int64_t kv_floats_per_layer(const ModelConfig& cfg, int64_t max_seq) { return 2 * max_seq * cfg.kv_dim(); }
  // io.hidden() [T, H] -> io.out [T, H]: the residual stream after layer `last` (StepIO: in place when
  // in == out, else in is copied to out first). Tokens sit at positions pos0..pos0+T-1; the cache must
  // already hold positions < pos0. Reports each layer's router logits, routes and output to io.observer.
  // Qwen3-Omni: io.rope_positions / io.rope_delta give the M-RoPE positions, io.deepstack the rows added
  // after layers 0..levels-1 (a layer's reported output includes them). Throws InputError for M-RoPE
  // positions on a model without M-RoPE or DeepStack rows placed outside the step.
  void step(const StepIO& io) override;
  const std::vector<LoadedTensor>& loaded() const override { return loaded_; }
  ExpertCacheStats expert_cache_stats() const override { return local_ ? local_->expert_cache_stats() : ExpertCacheStats{}; }

 private:
  struct Layer;
  class OwnedKv;
  // x [T, H] in place; the rest of the step (T, pos0, observer, M-RoPE positions, DeepStack) from io.
  void forward(float* x, const StepIO& io);
  void check_media_inputs(const StepIO& io) const;
  void shared_expert(const Layer& L, const float* xn, int64_t T);
  const ModelConfig& cfg_;
  ThreadPool& pool_;
  int first_, last_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::unique_ptr<ExpertsSegment> local_;
  std::unique_ptr<BankedExperts> local_exec_;
  ExpertExecutor* banks_ = nullptr;  // the banks, when the experts live there
  std::unique_ptr<OwnedKv> owned_kv_;
  std::vector<KvLayer> kv_;
  int64_t max_seq_ = 0;
  Rope rope_;
  bool mrope_ = false;  // the model's rotary embedding is M-RoPE (Qwen3-Omni): io.rope_positions are accepted
  std::vector<LoadedTensor> loaded_;
  // scratch
  std::vector<float> h_, q_, k_, v_, att_, o_, logits_, slots_, mlp_, g_, u_, sh_, sg_;
  std::vector<int32_t> top_e_;
  std::vector<float> top_w_;
};

}  // namespace segpipe
