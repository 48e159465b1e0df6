// Per-phase GPU time of a step (benchmarks: where the time goes). Off unless the context's
// set_profiling(true) (device.h): then events are recorded around the phases of each layer and summed
// per phase name into the context's phase_ms(). Never active while a stream is being captured into a
// CUDA graph.
#pragma once
#include <cuda_runtime_api.h>

#include <utility>
#include <vector>

#include "segments/cuda/device.h"

namespace segpipe::cuda {

class PhaseTimer {
 public:
  explicit PhaseTimer(Context& ctx);
  ~PhaseTimer();
  // The time since the previous mark (or construction) belongs to `phase`.
  void mark(const char* phase);

 private:
  Context& ctx_;
  bool on_ = false;
  std::vector<std::pair<const char*, cudaEvent_t>> ev_;
};

}  // namespace segpipe::cuda
