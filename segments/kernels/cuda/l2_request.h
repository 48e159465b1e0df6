// An L2 prefetch request's byte count as the decode kernels take it (prefetch_l2 in common.cuh):
// bit 63 asks L2 to keep the lines (evict_last) rather than treat them as ordinary ones, for weights
// fetched while memory idles that must survive the expert stream (75 MB a layer, read once with
// evict-first loads) until their kernel reads them. Such lines live in the L2 portion set aside for
// persisting accesses (l2_set_aside, segments/cuda/device.h).
#pragma once
#include <cstdint>

namespace segpipe::cuda {

constexpr uint64_t kL2KeepBit = uint64_t(1) << 63;
inline uint64_t l2_request(uint64_t bytes, bool keep) { return keep && bytes ? bytes | kL2KeepBit : bytes; }

}  // namespace segpipe::cuda
