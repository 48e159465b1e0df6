// Segment kind `experts`: a bank holding experts [e0, e1] of the MoE layers [a, b]. Given a layer's
// normalized hidden states and the router's choices it computes, for every (token, slot) whose
// expert it owns, the weighted expert output  down(silu(gate(x)) * up(x)) * weight.
// The layer that asked combines the slots in a fixed order (see combine_expert_outputs), so any
// split of the experts into banks gives the same bits as computing them all locally.
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

#include "segments/kernels/cpu/linear.h"
#include "segments/model/tensor_map.h"

namespace segpipe {

struct ExpertRequest {
  int layer = 0;
  const float* x = nullptr;           // [T, H] post-attention-normalized hidden states
  int64_t T = 0;
  int k = 0;                          // experts per token
  const int32_t* experts = nullptr;   // [T, k]
  const float* weights = nullptr;     // [T, k]
  float* out = nullptr;               // [T * k, H]: row t*k+j receives slot j of token t
};

// Counters of selective loading (all zero with full residency, except uses).
struct ExpertCacheStats {
  int max_resident = 0;          // per layer; 0: every expert may stay resident
  uint64_t uses = 0;             // (layer, expert) uses, one per expert per request
  uint64_t hits = 0;             // uses that found the expert resident
  uint64_t loads = 0;            // uses that had to load it
  uint64_t evictions = 0;        // experts released to make room
  uint64_t bytes_loaded = 0;     // weight bytes of the loads
  uint64_t resident_experts = 0; // experts resident now, over all layers
};

class ExpertsSegment {
 public:
  ExpertsSegment(Checkpoint& ck, const ModelConfig& cfg, ThreadPool& pool, int layer_first, int layer_last,
                 int expert_first, int expert_last, int max_resident = 0);
  bool owns(int layer, int expert) const;
  // Fills the rows of `req.out` for the slots this bank owns; other rows are left untouched.
  void compute(const ExpertRequest& req);
  const std::vector<LoadedTensor>& loaded() const { return loaded_; }
  int layer_first() const { return l0_; }
  int layer_last() const { return l1_; }
  int expert_first() const { return e0_; }
  int expert_last() const { return e1_; }
  const ExpertCacheStats& cache_stats() const { return stats_; }

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
