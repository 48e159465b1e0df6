#include "segments/cuda/profile.h"

namespace segpipe::cuda {

PhaseTimer::PhaseTimer(Context& ctx) : ctx_(ctx) {
  if (!ctx.profiling()) return;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(ctx.stream(), &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) return;
  on_ = true;
  mark(nullptr);
}

void PhaseTimer::mark(const char* phase) {
  if (!on_) return;
  cudaEvent_t e;
  cudaEventCreate(&e);
  cudaEventRecord(e, ctx_.stream());
  ev_.push_back({phase, e});
}

PhaseTimer::~PhaseTimer() {
  if (!on_ || ev_.empty()) return;
  cudaEventSynchronize(ev_.back().second);
  for (size_t i = 1; i < ev_.size(); i++) {
    float ms = 0;
    cudaEventElapsedTime(&ms, ev_[i - 1].second, ev_[i].second);
    ctx_.phase_ms()[ev_[i].first] += ms;
  }
  for (auto& p : ev_) cudaEventDestroy(p.second);
}

}  // namespace segpipe::cuda
