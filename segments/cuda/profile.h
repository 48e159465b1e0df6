// Per-phase GPU time of a step (benchmarks: where the time goes). Off unless set_profiling(true):
// then events are recorded around the phases of each layer and summed per phase name. Never active
// while a stream is being captured into a CUDA graph.
#pragma once
#include <cuda_runtime_api.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace segpipe::cuda {

void set_profiling(bool on);
bool profiling();
std::map<std::string, double>& phase_ms();  // phase -> total milliseconds since the last clear

class PhaseTimer {
 public:
  explicit PhaseTimer(cudaStream_t s);
  ~PhaseTimer();
  // The time since the previous mark (or construction) belongs to `phase`.
  void mark(const char* phase);

 private:
  cudaStream_t s_;
  bool on_ = false;
  std::vector<std::pair<const char*, cudaEvent_t>> ev_;
};

}  // namespace segpipe::cuda
