// Next-token choice: greedy, or temperature / top-k / top-p sampling with a seeded generator of our
// own (splitmix64), so sampled output is reproducible across runs, machines and transports: the
// segmented and the in-process run see bitwise-equal logits and draw the same numbers.
#pragma once
#include <cstdint>
#include <vector>

namespace segpipe {

struct SamplingParams {
  double temperature = 0.0;  // 0: greedy
  int top_k = 0;             // 0: off
  double top_p = 1.0;        // 1: off
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : p_(p), state_(p.seed) {}
  int32_t next(const float* logits, int vocab);
  // Greedy (temperature 0): the first maximum, which a runner may also choose where the logits are.
  bool greedy() const { return p_.temperature <= 0.0; }

 private:
  double uniform();
  SamplingParams p_;
  uint64_t state_;
};

}  // namespace segpipe
