// The GPU's table kind -> maker for the segment factory (segments/factory/segment_factory.h): the
// segments/cuda kinds, made from their SegmentParams and the GPU part of the SegmentEnv (a context, a
// weight source, the engine options; the KV storage, the banks, the tied embedding table).
//
// add_cuda_segment_backend() adds the table to this process's factory. The code that links the CUDA
// backend (the GPU runner, the GPU worker) calls it before its first make_segment: an explicit call,
// not a static initializer (segment_factory.h says why).
#pragma once
#include <span>

#include "segments/factory/segment_factory.h"

namespace segpipe {

std::span<const SegmentMaker> cuda_segment_makers();
// Idempotent: the table replaces the one of the same device type.
void add_cuda_segment_backend();

}  // namespace segpipe
