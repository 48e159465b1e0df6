#include "segments/kernels/cpu/linear.h"

#include <algorithm>
#include <vector>

#include "segments/core/errors.h"
#include "segments/kernels/cpu/simd8.h"

namespace segpipe {

namespace {

using simd::F16;
using simd::V8;

inline float scalar(const float* p, int64_t i) { return p[i]; }
inline float scalar(const uint16_t* p, int64_t i) { return bf16_to_f32(p[i]); }
inline float scalar(const F16* p, int64_t i) { return f16_to_f32(p[i].bits); }

// NR rows of W against one x vector; each of the NR results has the canonical dot order: four
// 8-lane accumulators over 32-element steps, summed (a0 + a1) + (a2 + a3) and reduced horizontally,
// then the tail in order. Decode streams one row at a time (NR = 1): one sequential stream per
// thread is what the hardware prefetchers serve best (about twice the bandwidth of four interleaved
// row streams on the machines we measured). Prefill pairs rows (NR = 2) to reuse each x load.
// The same order on x86-64 and ARM64 (simd8.h), so the results are too.
template <int NR, typename W>
inline void dot_rows(const float* x, const W* const* w, int64_t n, float* out) {
  using namespace simd;
  V8 a[NR][4];
  for (int r = 0; r < NR; r++)
    for (int j = 0; j < 4; j++) a[r][j] = zero8();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const V8 x0 = load8(x + i), x1 = load8(x + i + 8), x2 = load8(x + i + 16), x3 = load8(x + i + 24);
    for (int r = 0; r < NR; r++) {
      a[r][0] = fma8(x0, load8(w[r] + i), a[r][0]);
      a[r][1] = fma8(x1, load8(w[r] + i + 8), a[r][1]);
      a[r][2] = fma8(x2, load8(w[r] + i + 16), a[r][2]);
      a[r][3] = fma8(x3, load8(w[r] + i + 24), a[r][3]);
    }
  }
  for (int r = 0; r < NR; r++) {
    float tail = 0.f;
    for (int64_t j = i; j < n; j++) tail += x[j] * scalar(w[r], j);
    out[r] = hsum8(add8(add8(a[r][0], a[r][1]), add8(a[r][2], a[r][3]))) + tail;
  }
}

template <typename W>
inline void dot_block(int nr, const float* x, const W* const* w, int64_t n, float* out) {
  // Pairs of rows, then a single one: every result has the same order whatever the grouping.
  int r = 0;
  for (; r + 2 <= nr; r += 2) dot_rows<2>(x, w + r, n, out + r);
  for (; r < nr; r++) dot_rows<1>(x, w + r, n, out + r);
}

template <typename W>
void linear_direct(const float* x, int64_t T, const W* base, int64_t rows, int64_t cols, float* y, int64_t b0,
                   int64_t b1) {
  for (int64_t b = b0; b < b1; b++) {
    int64_t r0 = b * 4;
    int nr = static_cast<int>(std::min<int64_t>(4, rows - r0));
    for (int r = 0; r < nr; r++) {
      const W* w[1] = {base + (r0 + r) * cols};
      for (int64_t t = 0; t < T; t++) dot_rows<1>(x + t * cols, w, cols, y + t * rows + r0 + r);
    }
  }
}

template <typename W>
void convert_row(const W* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; i++) dst[i] = scalar(src, i);
}

// Prefill: convert each 4-row block to float32 once and reuse it for all T tokens (conversion is
// exact, so the results equal linear_direct's).
template <typename W>
void linear_converted(const float* x, int64_t T, const W* base, int64_t rows, int64_t cols, float* y, int64_t b0,
                      int64_t b1) {
  thread_local std::vector<float> buf;
  buf.resize(static_cast<size_t>(4 * cols));
  for (int64_t b = b0; b < b1; b++) {
    int64_t r0 = b * 4;
    int nr = static_cast<int>(std::min<int64_t>(4, rows - r0));
    const float* w[4];
    for (int r = 0; r < nr; r++) {
      convert_row(base + (r0 + r) * cols, cols, buf.data() + r * cols);
      w[r] = buf.data() + r * cols;
    }
    float out[4];
    for (int64_t t = 0; t < T; t++) {
      dot_block(nr, x + t * cols, w, cols, out);
      for (int r = 0; r < nr; r++) y[t * rows + r0 + r] = out[r];
    }
  }
}

template <typename W>
void linear_typed(ThreadPool& pool, const float* x, int64_t T, const W* base, int64_t rows, int64_t cols, float* y,
                  bool convert) {
  int64_t blocks = (rows + 3) / 4;
  // Enough rows per chunk that a thread's share is worth a wake-up.
  int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, cols * T));
  pool.parallel_for(
      blocks,
      [&](int64_t b0, int64_t b1) {
        if (convert)
          linear_converted(x, T, base, rows, cols, y, b0, b1);
        else
          linear_direct(x, T, base, rows, cols, y, b0, b1);
      },
      grain);
}

}  // namespace

void linear(ThreadPool& pool, const float* x, int64_t T, const Mat& w, float* y) {
  SEGPIPE_ASSERT(w.data != nullptr || w.rows * w.cols == 0);
  bool convert = T > 2;
  switch (w.dtype) {
    case DType::F32:
      linear_typed(pool, x, T, static_cast<const float*>(w.data), w.rows, w.cols, y, false);
      break;
    case DType::BF16:
      linear_typed(pool, x, T, static_cast<const uint16_t*>(w.data), w.rows, w.cols, y, convert);
      break;
    case DType::F16:
      linear_typed(pool, x, T, static_cast<const F16*>(w.data), w.rows, w.cols, y, convert);
      break;
    default:
      SEGPIPE_ASSERT_MSG(false, "linear: weight dtype must be F32, BF16 or F16");
  }
}

float dot_f32(const float* a, const float* b, int64_t n) {
  const float* w[1] = {b};
  float out;
  dot_rows<1>(a, w, n, &out);
  return out;
}

void mat_row_to_f32(const Mat& w, int64_t r, float* out) {
  switch (w.dtype) {
    case DType::F32: convert_row(static_cast<const float*>(w.data) + r * w.cols, w.cols, out); break;
    case DType::BF16: convert_row(static_cast<const uint16_t*>(w.data) + r * w.cols, w.cols, out); break;
    case DType::F16: convert_row(static_cast<const F16*>(w.data) + r * w.cols, w.cols, out); break;
    default: SEGPIPE_ASSERT_MSG(false, "mat_row_to_f32: dtype must be F32, BF16 or F16");
  }
}

}  // namespace segpipe
