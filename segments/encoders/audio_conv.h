// Conv2d(kernel 3, stride 2, padding 1) over one [channels, height, width] image, as the audio tower's
// three downsampling convolutions use it: patches gathered (im2col) in the weight's [c_in, kh, kw]
// order and multiplied by the weight viewed as [c_out, c_in * 9] with the fixed-order linear kernel.
#pragma once
#include <cstdint>
#include <vector>

#include "segments/core/mat.h"
#include "segments/kernels/cpu/thread_pool.h"

namespace segpipe {

inline int64_t conv3s2_out(int64_t n) { return (n - 1) / 2 + 1; }

// in: [c_in, h, w]; weight: [c_out, c_in * 9]; bias: [c_out]; out: [c_out, conv3s2_out(h), conv3s2_out(w)].
void conv3x3_stride2(ThreadPool& pool, const float* in, int64_t c_in, int64_t h, int64_t w, const Mat& weight,
                     const std::vector<float>& bias, std::vector<float>& out);

}  // namespace segpipe
