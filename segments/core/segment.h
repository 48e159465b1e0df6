// One segment of any kind on any backend, as drivers and workers hold it: made by the factory
// (segments/factory/segment_factory.h) from its SegmentParams, run one step at a time (StepIO says what
// each kind reads and writes). The CPU kinds implement it in segments/kinds, the GPU kinds in
// segments/cuda (kinds.h); an expert bank of either backend is reached through bank()
// (segments/core/expert_bank.h: one request type for both).
#pragma once
#include <cstdint>
#include <vector>

#include "segments/core/expert_bank.h"
#include "segments/core/expert_cache_stats.h"
#include "segments/core/loaded_tensor.h"
#include "segments/core/segment_params.h"
#include "segments/core/step_io.h"

namespace segpipe {

class Segment {
 public:
  explicit Segment(const SegmentParams& params) : params_(params) {}
  virtual ~Segment() = default;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  const SegmentParams& params() const { return params_; }
  // One step. An experts segment has none of its own (it throws RuntimeFailure): the layers segments it
  // serves call it through bank().
  virtual void step(const StepIO& io) = 0;
  // What it mapped or uploaded.
  virtual const std::vector<LoadedTensor>& loaded() const = 0;
  // Weight bytes it holds: those of loaded(), unless the backend holds another amount (a GPU uploads
  // the tensors in its compute dtype).
  virtual uint64_t weight_bytes() const {
    uint64_t b = 0;
    for (const LoadedTensor& t : loaded()) b += t.bytes;
    return b;
  }
  // Selective loading counters of the experts it holds (a bank's, a layers segment's local experts);
  // zero where it holds none.
  virtual ExpertCacheStats expert_cache_stats() const { return {}; }
  // The bank of an experts segment; null for every other kind.
  virtual ExpertBank* bank() { return nullptr; }

 private:
  SegmentParams params_;
};

}  // namespace segpipe
