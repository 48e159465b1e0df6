// What a segment mapped (CPU) or uploaded (GPU), one entry per checkpoint tensor: kHello counts them,
// kNames lists them, the reports sum their bytes. In core so that the segment interface (segment.h)
// needs no checkpoint header.
#pragma once
#include <cstdint>
#include <string>

namespace segpipe {

struct LoadedTensor {
  std::string name;
  uint64_t bytes;
};

}  // namespace segpipe
