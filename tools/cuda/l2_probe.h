// Whether weights asked into L2 while memory idles are still there when their kernel runs: the decode
// q/k/v product (the real gemv_rmsnorm kernel on a [rows, cols] bf16 matrix) timed after each way of
// getting its matrix into L2, with and without the 75 MB expert stream in between and with and without
// an L2 portion set aside for kept (evict_last) lines.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "segments/kernels/cuda/device_caps.h"

namespace segpipe::benchtools {

struct L2Probe {
  std::string scenario;
  double us = 0;    // median time of the product (events around it alone)
  double gbs = 0;   // matrix bytes / time
  double us2 = 0;   // the second product (o_proj) where the scenario has one, else 0
};

// rows x cols: the q/k/v matrix; rows2 x cols2: the o_proj matrix; stream_bytes: the expert bytes a
// layer reads between the router and the next q/k/v (read once with evict-first loads).
// vocab (optional, > 0): also the vocabulary product (vocab x cols, the lm_head's gemv_rmsnorm) alone,
// beside a plain read and a device-to-device copy of the same bytes.
// moe_k, moe_inter (optional, > 0): also a chain of decode MoE layers' expert kernels (gate/up, then
// down + combine; moe_k experts of moe_inter rows, each layer's own weights) beside a plain read of
// the same bytes. path: the kernel path the product kernels take (the explicitly programmatic
// hand-off scenarios launch with PDL regardless).
std::vector<L2Probe> l2_probe(const cuda::KernelPath& path, int64_t rows, int64_t cols, int64_t rows2, int64_t cols2, uint64_t stream_bytes,
                              int64_t vocab = 0, int moe_k = 0, int64_t moe_inter = 0);

}  // namespace segpipe::benchtools
