// Read-bandwidth ceilings for the decode benchmark: how fast the GPU streams the bytes of one MoE
// layer's chosen experts (8 regions of one expert each, read once) with the access methods the
// decode kernels use, each method timed alone on cold data.
#pragma once
#include <string>
#include <vector>

namespace segpipe::benchtools {

struct ReadCeiling {
  std::string method;
  double us = 0;    // median time of one pass over the regions
  double gbs = 0;   // bytes read / time
};

// regions: `regions` pieces of region_bytes each (4 KB rows), spread over a buffer of
// expert_stride * experts bytes; a pass reads each piece once. Methods: cudaMemcpy of the same
// byte count (read + write counted), 16-byte loads held in registers (two 8-warp blocks per SM,
// one row per warp in flight, the next row's loads issued before the current one is reduced), bulk
// copies into per-warp shared-memory rings (one 16-warp block per SM, 3 stages of 4 KB a warp).
std::vector<ReadCeiling> read_ceilings(int regions, size_t region_bytes, size_t expert_stride, int experts);

}  // namespace segpipe::benchtools
