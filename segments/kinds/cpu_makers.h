// The CPU backend's table for the segment factory (segments/factory/segment_factory.h): one line per
// kind, each the CPU class of that kind (segments/kinds/*.h).
#pragma once
#include <span>

#include "segments/factory/segment_factory.h"

namespace segpipe {

std::span<const SegmentMaker> cpu_segment_makers();

}  // namespace segpipe
