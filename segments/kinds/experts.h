// Segment kind `experts`: a bank holding experts [e0, e1] of the MoE layers [a, b] (what a bank
// computes and why any split gives the same bits: segments/core/expert_bank.h). A layers segment with
// local experts holds one too, over all experts of its layers.
//
// Selective loading (max_resident > 0): at most that many experts per layer stay resident. The
// weights stay mapped (mapping costs no memory); an expert is loaded on first use (MADV_WILLNEED,
// then the kernels fault its pages in from the page cache or the file) and released when it is the
// least recently used one of its layer and room is needed (MADV_DONTNEED on its pages: the process
// drops them, a later use reads them again). The bytes computed with are the same either way, so
// the output is bit-identical to full residency.
#pragma once
#include <cstdint>
#include <map>
#include <vector>

#include "segments/core/expert_bank.h"
#include "segments/core/expert_cache_stats.h"
#include "segments/core/segment.h"
#include "segments/factory/segment_env.h"
#include "segments/kernels/cpu/linear.h"
#include "segments/model/tensor_map.h"

namespace segpipe {

class ExpertsSegment : public Segment, public ExpertBank {
 public:
  // params: layer and expert ranges, max_resident_experts.
  ExpertsSegment(const SegmentParams& params, SegmentEnv& env);
  // A bank has no step of its own: its layers segments call compute().
  void step(const StepIO& io) override;
  const std::vector<LoadedTensor>& loaded() const override { return loaded_; }
  ExpertCacheStats expert_cache_stats() const override { return stats_; }
  ExpertBank* bank() override { return this; }

  bool holds_layer(int layer) const override { return layer >= l0_ && layer <= l1_; }
  bool owns(int layer, int expert) const override;
  void compute(const ExpertRequest& req) override;

 private:
  // Makes expert e of layer l resident (LRU per layer), counting hits, loads and evictions.
  void touch(int layer, int e);
  void release(const WeightBinder::ExpertMats& m);
  const ModelConfig& cfg_;
  ThreadPool& pool_;
  int l0_, l1_, e0_, e1_;
  std::map<int, std::vector<WeightBinder::ExpertMats>> mats_;  // layer -> experts e0..e1
  std::vector<LoadedTensor> loaded_;
  std::vector<float> xs_, g_, u_, d_;
  ExpertCacheStats stats_;
  std::map<int, std::vector<int>> lru_;  // layer -> resident experts, least recently used first
};

// Sums each token's k weighted expert outputs in ascending expert id (the reference's index_add_
// order, starting from zero) into out [T, H].
void combine_expert_outputs(const float* slots, const int32_t* experts, int64_t T, int k, int H, float* out);

}  // namespace segpipe
