// Receives the intermediate tensors of a step as the segments compute them (embeddings, layer outputs,
// router logits and choices, final norm, logits), so verify, dump and bisect see inside a segment
// without a second code path. A boundary is a typed value; its text (golden-format.md's spelling) is
// made only where it meets a file or a report (Boundary::name).
#pragma once
#include <cstdint>
#include <string>

namespace segpipe {

struct Boundary {
  enum class Kind { embeddings, layer_output, router_logits, norm, logits };
  Kind kind = Kind::embeddings;
  int layer = -1;  // layer_output, router_logits

  static Boundary embeddings() { return {Kind::embeddings, -1}; }
  static Boundary output(int layer) { return {Kind::layer_output, layer}; }
  static Boundary router_logits(int layer) { return {Kind::router_logits, layer}; }
  static Boundary norm() { return {Kind::norm, -1}; }
  static Boundary logits() { return {Kind::logits, -1}; }
  // "embeddings", "layers.{i}.output", "layers.{i}.router_logits", "norm", "logits"
  std::string name() const {
    switch (kind) {
      case Kind::embeddings: return "embeddings";
      case Kind::layer_output: return "layers." + std::to_string(layer) + ".output";
      case Kind::router_logits: return "layers." + std::to_string(layer) + ".router_logits";
      case Kind::norm: return "norm";
      case Kind::logits: return "logits";
    }
    return "?";
  }
  friend bool operator==(const Boundary&, const Boundary&) = default;
};

class BoundaryObserver {
 public:
  virtual ~BoundaryObserver() = default;
  virtual void on_tensor(const Boundary& b, const float* data, int64_t rows, int64_t cols) = 0;
  // The router's choices for MoE layer `layer`: [T, k] expert ids and weights.
  virtual void on_route(int layer, const int32_t* experts, const float* weights, int64_t T, int k) {}
};

}  // namespace segpipe
