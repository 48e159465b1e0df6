// Router visibility over a set of prompts: per MoE layer, how often each expert was chosen, the
// share of the routed slots its most used experts take, and the experts never chosen.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "segments/model/config.h"

namespace segpipe {

class RouterStats {
 public:
  explicit RouterStats(const ModelConfig& cfg) : E_(cfg.num_experts), k_(cfg.top_k) {}
  // The router's choices of one step for MoE layer `layer`: [T, k] expert ids.
  void add(int layer, const int32_t* experts, int64_t T, int k);
  bool empty() const { return counts_.empty(); }
  // Per layer: tokens, slots, counts[E], top-1 / top-k share, never_used, experts_used.
  nlohmann::json to_json() const;
  // One line per layer: "layer 3: 12 tokens, 6/8 experts used, top-2 take 58% (e5 33%, e1 25%), never: 0 7".
  void print(FILE* out) const;
  const std::map<int, std::vector<uint64_t>>& counts() const { return counts_; }

 private:
  int E_, k_;
  std::map<int, std::vector<uint64_t>> counts_;  // layer -> counts per expert
  std::map<int, uint64_t> tokens_;
};

}  // namespace segpipe
