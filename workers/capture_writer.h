// Writes a layers segment's internal boundaries (every layer output, router logits and choices)
// into its capture block, where the orchestrator reads them for verify, dump and bisect.
#pragma once
#include <cstring>

#include "segments/kinds/boundary_observer.h"
#include "segments/model/config.h"
#include "shm/arena.h"
#include "workers/protocol.h"

namespace segpipe {

class CaptureWriter : public BoundaryObserver {
 public:
  CaptureWriter(const proto::WorkerSpec& s, const shm::Arena& arena, const ModelConfig& cfg, int64_t T)
      : T_(T),
        lay_(proto::make_capture_layout(s.layer_first, s.layer_last, s.capture_tokens, cfg.hidden, cfg.num_experts,
                                        cfg.top_k, [&](int l) { return cfg.is_moe_layer(l); })),
        base_(arena.payload_span<float>(s.capture_block).data()) {
    if (T > s.capture_tokens)
      throw RuntimeFailure("capture of " + std::to_string(T) + " tokens exceeds the capture buffers (" +
                           std::to_string(s.capture_tokens) + ")");
  }
  void on_tensor(const Boundary& b, const float* data, int64_t rows, int64_t cols) override {
    // A layers segment reports its layer outputs and router logits, nothing else.
    if (b.kind != Boundary::Kind::layer_output && b.kind != Boundary::Kind::router_logits) return;
    float* dst = base_ + (b.kind == Boundary::Kind::layer_output ? lay_.output(b.layer) : lay_.logits(b.layer));
    std::memcpy(dst, data, static_cast<size_t>(rows * cols) * sizeof(float));
  }
  void on_route(int layer, const int32_t* experts, const float* weights, int64_t T, int k) override {
    std::memcpy(base_ + lay_.experts(layer), experts, static_cast<size_t>(T * k) * 4);
    std::memcpy(base_ + lay_.weights(layer), weights, static_cast<size_t>(T * k) * 4);
  }

 private:
  int64_t T_;
  proto::CaptureLayout lay_;
  float* base_;
};

}  // namespace segpipe
