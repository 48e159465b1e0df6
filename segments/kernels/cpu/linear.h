// y[T, rows] = x[T, cols] · W^T for a row-major weight W [rows, cols] in F32, BF16 or F16.
// Every output element is one dot product with a fixed order (two 8-lane accumulators over
// 16-element steps, a fixed horizontal sum, then the tail in order), whatever T, the thread count
// or the path taken, so a token's result is the same in prefill, in decode and in any segment.
#pragma once
#include <cstdint>

#include "segments/core/dtype.h"
#include "segments/core/mat.h"
#include "segments/kernels/cpu/thread_pool.h"

namespace segpipe {

void linear(ThreadPool& pool, const float* x, int64_t T, const Mat& w, float* y);

// The same dot product as linear() uses, for float vectors (attention uses it).
float dot_f32(const float* a, const float* b, int64_t n);

// Row r of W as float32 (embedding lookup).
void mat_row_to_f32(const Mat& w, int64_t r, float* out);

}  // namespace segpipe
