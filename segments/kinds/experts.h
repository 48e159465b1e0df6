// Segment kind `experts`: a bank holding experts [e0, e1] of the MoE layers [a, b]. Given a layer's
// normalized hidden states and the router's choices it computes, for every (token, slot) whose
// expert it owns, the weighted expert output  down(silu(gate(x)) * up(x)) * weight.
// The layer that asked combines the slots in a fixed order (see combine_expert_outputs), so any
// split of the experts into banks gives the same bits as computing them all locally.
#pragma once
#include <cstdint>
#include <map>
#include <vector>

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

class ExpertsSegment {
 public:
  ExpertsSegment(Checkpoint& ck, const ModelConfig& cfg, ThreadPool& pool, int layer_first, int layer_last,
                 int expert_first, int expert_last);
  bool owns(int layer, int expert) const;
  // Fills the rows of `req.out` for the slots this bank owns; other rows are left untouched.
  void compute(const ExpertRequest& req);
  const std::vector<LoadedTensor>& loaded() const { return loaded_; }
  int layer_first() const { return l0_; }
  int layer_last() const { return l1_; }
  int expert_first() const { return e0_; }
  int expert_last() const { return e1_; }

 private:
  const ModelConfig& cfg_;
  ThreadPool& pool_;
  int l0_, l1_, e0_, e1_;
  std::map<int, std::vector<WeightBinder::ExpertMats>> mats_;  // layer -> experts e0..e1
  std::vector<LoadedTensor> loaded_;
  std::vector<float> xs_, g_, u_, d_;
};

// Sums each token's k weighted expert outputs in ascending expert id (the reference's index_add_
// order, starting from zero) into out [T, H].
void combine_expert_outputs(const float* slots, const int32_t* experts, int64_t T, int k, int H, float* out);

}  // namespace segpipe
