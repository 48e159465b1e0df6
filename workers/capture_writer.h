// Writes a layers segment's internal boundaries (every layer output, router logits and choices)
// into its capture block, where the orchestrator reads them for verify, dump and bisect. A worker of
// any kind may hand it to its segment: the other kinds' boundaries (embeddings, norm, logits) reach
// the orchestrator through their output blocks, so they are ignored here, and the capture block is
// looked up at the first layer boundary only (only a layers segment has one).
#pragma once
#include <cstring>
#include <optional>

#include "segments/core/boundary_observer.h"
#include "segments/core/errors.h"
#include "segments/model/config.h"
#include "shm/arena.h"
#include "workers/protocol.h"

namespace segpipe {

class CaptureWriter : public BoundaryObserver {
 public:
  CaptureWriter(const proto::WorkerSpec& s, const shm::Arena& arena, const ModelConfig& cfg, int64_t T)
      : spec_(s), arena_(arena), cfg_(cfg) {
    if (T > s.capture_tokens)
      throw RuntimeFailure("capture of " + std::to_string(T) + " tokens exceeds the capture buffers (" +
                           std::to_string(s.capture_tokens) + ")");
  }
  void on_tensor(const Boundary& b, const float* data, int64_t rows, int64_t cols) override {
    // A layers segment reports its layer outputs and router logits, nothing else.
    if (b.kind != Boundary::Kind::layer_output && b.kind != Boundary::Kind::router_logits) return;
    const Target& t = target();
    float* dst = t.base + (b.kind == Boundary::Kind::layer_output ? t.layout.output(b.layer) : t.layout.logits(b.layer));
    std::memcpy(dst, data, static_cast<size_t>(rows * cols) * sizeof(float));
  }
  void on_route(int layer, const int32_t* experts, const float* weights, int64_t T, int k) override {
    const Target& t = target();
    std::memcpy(t.base + t.layout.experts(layer), experts, static_cast<size_t>(T * k) * 4);
    std::memcpy(t.base + t.layout.weights(layer), weights, static_cast<size_t>(T * k) * 4);
  }

 private:
  struct Target {
    proto::CaptureLayout layout;
    float* base;
  };
  const Target& target() {
    if (!target_)
      target_ = Target{proto::make_capture_layout(spec_.layer_first, spec_.layer_last, spec_.capture_tokens, cfg_.hidden,
                                                  cfg_.num_experts, cfg_.top_k, [&](int l) { return cfg_.is_moe_layer(l); }),
                       arena_.payload_span<float>(spec_.capture_block).data()};
    return *target_;
  }
  const proto::WorkerSpec& spec_;
  const shm::Arena& arena_;
  const ModelConfig& cfg_;
  std::optional<Target> target_;
};

}  // namespace segpipe
