// A model config's attention-stack sizes as one value, so that a test states a model's sizes together
// (the committed configs, the synthetic presets) and a mismatch prints them all, named.
#pragma once
#include <compare>
#include <ostream>

#include "segments/model/config.h"

namespace segpipe::testing {

struct ConfigSizes {
  int layers = 0, hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  auto operator<=>(const ConfigSizes&) const = default;
};

inline ConfigSizes sizes_of(const ModelConfig& c) {
  return {c.num_layers, c.hidden, c.num_heads, c.num_kv_heads, c.head_dim, c.vocab};
}

inline std::ostream& operator<<(std::ostream& o, const ConfigSizes& s) {
  return o << "{layers " << s.layers << ", hidden " << s.hidden << ", heads " << s.heads << ", kv_heads " << s.kv_heads
           << ", head_dim " << s.head_dim << ", vocab " << s.vocab << "}";
}

}  // namespace segpipe::testing
