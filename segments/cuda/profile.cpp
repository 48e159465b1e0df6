#include "segments/cuda/profile.h"

#include <atomic>

namespace segpipe::cuda {

namespace {
std::atomic<bool> g_on{false};
}

void set_profiling(bool on) { g_on = on; }
bool profiling() { return g_on; }
std::map<std::string, double>& phase_ms() {
  static std::map<std::string, double> m;
  return m;
}

PhaseTimer::PhaseTimer(cudaStream_t s) : s_(s) {
  if (!g_on) return;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) return;
  on_ = true;
  mark(nullptr);
}

void PhaseTimer::mark(const char* phase) {
  if (!on_) return;
  cudaEvent_t e;
  cudaEventCreate(&e);
  cudaEventRecord(e, s_);
  ev_.push_back({phase, e});
}

PhaseTimer::~PhaseTimer() {
  if (!on_ || ev_.empty()) return;
  cudaEventSynchronize(ev_.back().second);
  for (size_t i = 1; i < ev_.size(); i++) {
    float ms = 0;
    cudaEventElapsedTime(&ms, ev_[i - 1].second, ev_[i].second);
    phase_ms()[ev_[i].first] += ms;
  }
  for (auto& p : ev_) cudaEventDestroy(p.second);
}

}  // namespace segpipe::cuda
