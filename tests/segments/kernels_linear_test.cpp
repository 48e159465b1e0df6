// linear (segments/kernels/cpu/linear.h) against a float64 reference for F32 / BF16 / F16 weights,
// odd sizes and several T; the canonical dot order makes a row's result independent of T and of the
// thread count (bit for bit).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "segments/kernels/cpu/linear.h"
#include "segments/kernels/cpu/thread_pool.h"
#include "segments_test_support.h"

namespace segpipe {
namespace {

// Random weights stored as raw bits of the given dtype, and their exact float64 values decoded by the
// reference decoders (not by the library).
struct Weights {
  DType dtype;
  int64_t rows, cols;
  std::vector<float> f32;
  std::vector<uint16_t> half;
  std::vector<double> exact;
  Mat mat() const { return Mat{dtype == DType::F32 ? static_cast<const void*>(f32.data()) : half.data(), dtype, rows, cols}; }
};

Weights make_weights(DType dt, int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Weights w{dt, rows, cols, {}, {}, {}};
  size_t n = static_cast<size_t>(rows * cols);
  w.exact.resize(n);
  if (dt == DType::F32) {
    w.f32.resize(n);
    for (size_t i = 0; i < n; i++) w.exact[i] = w.f32[i] = u(rng);
  } else {
    w.half.resize(n);
    for (size_t i = 0; i < n; i++) {
      uint16_t bits;
      double v;
      do {  // random finite values of moderate magnitude in the 16-bit format
        bits = static_cast<uint16_t>(rng());
        v = dt == DType::BF16 ? testing::ref_bf16(bits) : testing::ref_f16(bits);
      } while (!std::isfinite(v) || std::fabs(v) > 4.0);
      w.half[i] = bits;
      w.exact[i] = v;
    }
  }
  return w;
}

std::vector<float> random_x(int64_t T, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<float> x(static_cast<size_t>(T * cols));
  for (auto& v : x) v = u(rng);
  return x;
}

const DType kDtypes[] = {DType::F32, DType::BF16, DType::F16};

TEST(KernelLinear, MatchesFloat64ReferenceForOddSizes) {
  ThreadPool pool(2);
  int checked = 0;
  for (DType dt : kDtypes)
    for (int64_t rows : {1, 3, 5, 7, 13, 34})
      for (int64_t cols : {1, 7, 15, 16, 17, 31, 33, 100, 257})
        for (int64_t T : {1, 2, 3, 5, 8}) {
          Weights w = make_weights(dt, rows, cols, static_cast<uint64_t>(rows * 1000 + cols));
          std::vector<float> x = random_x(T, cols, static_cast<uint64_t>(T * 77 + cols));
          std::vector<float> y(static_cast<size_t>(T * rows), -12345.f);
          linear(pool, x.data(), T, w.mat(), y.data());
          for (int64_t t = 0; t < T; t++)
            for (int64_t r = 0; r < rows; r++) {
              double ref = 0, mag = 0;
              for (int64_t c = 0; c < cols; c++) {
                double p = static_cast<double>(x[static_cast<size_t>(t * cols + c)]) * w.exact[static_cast<size_t>(r * cols + c)];
                ref += p;
                mag += std::fabs(p);
              }
              // float32 accumulation of `cols` products: error bounded by ~cols * 2^-24 * sum|p|.
              double tol = (static_cast<double>(cols) + 4) * 6e-8 * mag + 1e-30;
              ASSERT_NEAR(y[static_cast<size_t>(t * rows + r)], ref, tol)
                  << dtype_name(dt) << " rows " << rows << " cols " << cols << " T " << T << " at t " << t << " r " << r;
              checked++;
            }
        }
  EXPECT_GT(checked, 10000);
}

TEST(KernelLinear, RowResultDoesNotDependOnT) {
  ThreadPool pool(2);
  for (DType dt : kDtypes)
    for (int64_t cols : {5, 33, 96, 259}) {
      const int64_t rows = 23, T = 9;
      Weights w = make_weights(dt, rows, cols, 5);
      std::vector<float> x = random_x(T, cols, 6);
      std::vector<float> many(static_cast<size_t>(T * rows));
      linear(pool, x.data(), T, w.mat(), many.data());
      for (int64_t t = 0; t < T; t++) {
        std::vector<float> one(static_cast<size_t>(rows)), two(static_cast<size_t>(2 * rows));
        linear(pool, x.data() + t * cols, 1, w.mat(), one.data());
        ASSERT_EQ(std::memcmp(one.data(), many.data() + t * rows, static_cast<size_t>(rows) * 4), 0)
            << dtype_name(dt) << " cols " << cols << " token " << t << ": T=1 differs from T=" << T;
        if (t + 1 < T) {  // T=2 (the direct path) as well
          linear(pool, x.data() + t * cols, 2, w.mat(), two.data());
          ASSERT_EQ(std::memcmp(two.data(), many.data() + t * rows, static_cast<size_t>(2 * rows) * 4), 0)
              << dtype_name(dt) << " cols " << cols << " token " << t << ": T=2 differs";
        }
      }
    }
}

TEST(KernelLinear, ResultDoesNotDependOnThreadCount) {
  ThreadPool p1(1), p2(2), p3(3);
  // Shapes large enough that the pool splits the rows (decode: T=1 with wide rows; prefill: T=8).
  for (DType dt : kDtypes)
    for (auto [rows, cols, T] : {std::tuple<int64_t, int64_t, int64_t>{203, 1031, 1}, {257, 259, 8}, {130, 64, 3}}) {
      Weights w = make_weights(dt, rows, cols, 11);
      std::vector<float> x = random_x(T, cols, 12);
      std::vector<float> y1(static_cast<size_t>(T * rows)), y2(y1.size()), y3(y1.size());
      linear(p1, x.data(), T, w.mat(), y1.data());
      linear(p2, x.data(), T, w.mat(), y2.data());
      linear(p3, x.data(), T, w.mat(), y3.data());
      EXPECT_EQ(std::memcmp(y1.data(), y2.data(), y1.size() * 4), 0) << dtype_name(dt) << " 1 vs 2 threads";
      EXPECT_EQ(std::memcmp(y1.data(), y3.data(), y1.size() * 4), 0) << dtype_name(dt) << " 1 vs 3 threads";
    }
}

TEST(KernelLinear, DotF32AndRowConversion) {
  std::vector<float> a = random_x(1, 37, 1), b = random_x(1, 37, 2);
  double ref = 0, mag = 0;
  for (size_t i = 0; i < 37; i++) {
    ref += static_cast<double>(a[i]) * b[i];
    mag += std::fabs(static_cast<double>(a[i]) * b[i]);
  }
  EXPECT_NEAR(dot_f32(a.data(), b.data(), 37), ref, 41 * 6e-8 * mag);
  for (DType dt : kDtypes) {
    Weights w = make_weights(dt, 4, 21, 3);
    std::vector<float> row(21);
    mat_row_to_f32(w.mat(), 2, row.data());
    for (size_t c = 0; c < 21; c++) EXPECT_EQ(static_cast<double>(row[c]), w.exact[2 * 21 + c]) << dtype_name(dt);
  }
}

}  // namespace
}  // namespace segpipe
