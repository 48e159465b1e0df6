// Receives named intermediate tensors as a segment computes them (layer outputs, router logits and
// choices), so verify, dump and bisect see inside a segment without a second code path.
#pragma once
#include <cstdint>
#include <string>

namespace segpipe {

class BoundaryObserver {
 public:
  virtual ~BoundaryObserver() = default;
  // name follows golden-format.md: "layers.{i}.output", "layers.{i}.router_logits", ...
  virtual void on_tensor(const std::string& name, const float* data, int64_t rows, int64_t cols) = 0;
  // The router's choices for MoE layer `layer`: [T, k] expert ids and weights.
  virtual void on_route(int layer, const int32_t* experts, const float* weights, int64_t T, int k) {}
};

}  // namespace segpipe
