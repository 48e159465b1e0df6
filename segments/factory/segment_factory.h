// Makes a segment of any kind on any backend from its SegmentParams: the one place where the kind and
// the device pick a class. Each backend brings one table, kind -> maker (the CPU's: segments/kinds/
// cpu_makers.h), so a new kind is one class per backend plus one line in each backend's table.
//
// Why backends add their table to a registry, rather than one factory that names every backend: this
// file is compiled into segpipe_segments, which the CUDA library links (segpipe_cuda depends on it, not
// the other way round), so it cannot call into the CUDA backend without making every CPU build link
// CUDA. The CPU table is built in (same library). The GPU's (segments/cuda/cuda_makers.h) is added by
// the code that links the CUDA backend (the GPU worker, the GPU runner) with add_cuda_segment_backend(),
// before its first make_segment.
// It is an explicit call and not a static initializer in the backend's library: an object of a static
// library that nothing references is left out of the link, its initializer with it, and the backend
// would be silently missing.
#pragma once
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "segments/core/segment.h"
#include "segments/core/segment_params.h"
#include "segments/factory/segment_env.h"

namespace segpipe {

using MakeSegment = std::unique_ptr<Segment> (*)(const SegmentParams& params, SegmentEnv& env);

struct SegmentMaker {
  SegmentKind kind;
  MakeSegment make;
};

// A backend's table: the kinds it makes, for the devices of one type.
struct SegmentBackend {
  Device::Type device;
  std::span<const SegmentMaker> makers;
};

class SegmentFactory {
 public:
  // Adds a backend's table, replacing the one of the same device type.
  void add(const SegmentBackend& backend);
  // Throws InputError naming the kind and the device when no table has that pair; the maker itself
  // throws InputError for params its backend cannot run (e.g. a compute dtype it lacks).
  std::unique_ptr<Segment> make(const SegmentParams& params, SegmentEnv& env) const;

 private:
  mutable std::mutex mu_;
  std::vector<SegmentBackend> backends_;
};

// This process's factory: the CPU backend, and those added since.
SegmentFactory& segment_factory();
inline void add_segment_backend(const SegmentBackend& backend) { segment_factory().add(backend); }
inline std::unique_ptr<Segment> make_segment(const SegmentParams& params, SegmentEnv& env) {
  return segment_factory().make(params, env);
}

}  // namespace segpipe
