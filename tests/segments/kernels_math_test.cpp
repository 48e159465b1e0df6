// rmsnorm, RoPE, routing, attention and the expert combine (segments/kernels/cpu, segments/kinds)
// against direct float64 formulas.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "segments/kernels/cpu/attention.h"
#include "segments/kernels/cpu/rmsnorm.h"
#include "segments/kernels/cpu/rope.h"
#include "segments/kernels/cpu/router.h"
#include "segments/kernels/cpu/thread_pool.h"
#include "segments/kinds/experts.h"
#include "segments_test_support.h"

namespace segpipe {
namespace {

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

TEST(KernelRmsnorm, MatchesFloat64Reference) {
  for (int64_t n : {1, 7, 16, 80, 129}) {
    const int64_t rows = 5;
    const float eps = 1e-6f;
    std::vector<float> x = randn(static_cast<size_t>(rows * n), static_cast<uint64_t>(n), 3.f);
    x[0] = 0;  // a zero in the row
    std::vector<float> w = randn(static_cast<size_t>(n), 99);
    std::vector<float> y(x.size());
    rmsnorm(x.data(), rows, n, w.data(), eps, y.data());
    for (int64_t r = 0; r < rows; r++) {
      double ss = 0;
      for (int64_t i = 0; i < n; i++) ss += static_cast<double>(x[static_cast<size_t>(r * n + i)]) * x[static_cast<size_t>(r * n + i)];
      double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
      for (int64_t i = 0; i < n; i++) {
        double ref = w[static_cast<size_t>(i)] * (x[static_cast<size_t>(r * n + i)] * inv);
        EXPECT_NEAR(y[static_cast<size_t>(r * n + i)], ref, 4e-7 * std::fabs(ref) + 1e-30) << "n " << n << " r " << r << " i " << i;
      }
    }
    // In place (y aliases x) gives the same bits.
    std::vector<float> z = x;
    rmsnorm(z.data(), rows, n, w.data(), eps, z.data());
    EXPECT_EQ(std::memcmp(z.data(), y.data(), y.size() * 4), 0);
  }
  // An all-zero row is eps-guarded, not NaN.
  std::vector<float> zero(8, 0.f), w(8, 1.f), out(8, 7.f);
  rmsnorm(zero.data(), 1, 8, w.data(), 1e-6f, out.data());
  for (float v : out) EXPECT_EQ(v, 0.f);
}

TEST(KernelRope, MatchesDirectFloat64Formula) {
  for (int hd : {2, 16, 32, 128})
    for (double theta : {10000.0, 1000000.0}) {
      Rope rope(hd, theta);
      const int heads = 3, half = hd / 2;
      for (int64_t pos : {0, 1, 2, 7, 100, 1000, 4095}) {
        std::vector<float> x = randn(static_cast<size_t>(heads * hd), static_cast<uint64_t>(pos + hd));
        std::vector<float> y = x;
        rope.apply(y.data(), heads, pos);
        for (int h = 0; h < heads; h++)
          for (int i = 0; i < half; i++) {
            // Rotate-half: (x_i, x_{i+half}) rotated by pos * theta^(-2i/hd).
            double ang = static_cast<double>(pos) * std::pow(theta, -2.0 * i / hd);
            double a = x[static_cast<size_t>(h * hd + i)], b = x[static_cast<size_t>(h * hd + i + half)];
            double r0 = a * std::cos(ang) - b * std::sin(ang);
            double r1 = b * std::cos(ang) + a * std::sin(ang);
            // The kernel forms the angle in float32 as transformers does: its error grows with the
            // angle (inv_freq and pos * inv_freq each rounded: ~4 ulp of ang), plus the rounding of the products.
            double tol = (std::fabs(a) + std::fabs(b)) * (2.5e-7 + 2.5e-7 * std::fabs(ang));
            EXPECT_NEAR(y[static_cast<size_t>(h * hd + i)], r0, tol) << "hd " << hd << " pos " << pos << " i " << i;
            EXPECT_NEAR(y[static_cast<size_t>(h * hd + i + half)], r1, tol) << "hd " << hd << " pos " << pos << " i " << i;
          }
        if (pos == 0) {
          EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * 4), 0) << "position 0 is the identity";
        }
      }
    }
}

TEST(KernelRope, HeadsAreRotatedIndependently) {
  Rope rope(16, 1e6);
  std::vector<float> x = randn(4 * 16, 3);
  std::vector<float> all = x;
  rope.apply(all.data(), 4, 37);
  for (int h = 0; h < 4; h++) {
    std::vector<float> one(x.begin() + h * 16, x.begin() + (h + 1) * 16);
    rope.apply(one.data(), 1, 37);
    EXPECT_EQ(std::memcmp(one.data(), all.data() + h * 16, 64), 0);
  }
}

// Reference routing: float64 softmax, k largest (ties to the lower id), optional renormalization.
void ref_route(const float* l, int E, int k, bool renorm, std::vector<int>& ids, std::vector<double>& w, double& margin) {
  double mx = *std::max_element(l, l + E), s = 0;
  std::vector<double> p(static_cast<size_t>(E));
  for (int e = 0; e < E; e++) s += (p[static_cast<size_t>(e)] = std::exp(static_cast<double>(l[e]) - mx));
  for (auto& v : p) v /= s;
  std::vector<int> idx(static_cast<size_t>(E));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)]; });
  ids.assign(idx.begin(), idx.begin() + k);
  double sum = 0;
  for (int j = 0; j < k; j++) sum += p[static_cast<size_t>(ids[static_cast<size_t>(j)])];
  w.clear();
  for (int j = 0; j < k; j++) w.push_back(renorm ? p[static_cast<size_t>(ids[static_cast<size_t>(j)])] / sum : p[static_cast<size_t>(ids[static_cast<size_t>(j)])]);
  margin = 1;  // smallest gap between neighbours in the sorted order up to position k
  for (int j = 0; j < std::min(k, E - 1); j++)
    margin = std::min(margin, p[static_cast<size_t>(idx[static_cast<size_t>(j)])] - p[static_cast<size_t>(idx[static_cast<size_t>(j + 1)])]);
}

TEST(KernelRouter, SoftmaxTopkAndRenormalizeMatchReference) {
  int compared = 0;
  for (int E : {4, 8, 16, 128})
    for (int k : {1, 2, 4, 8})
      for (bool renorm : {false, true}) {
        if (k > E) continue;
        const int64_t T = 20;
        std::vector<float> logits = randn(static_cast<size_t>(T * E), static_cast<uint64_t>(E * 10 + k), 2.f);
        std::vector<int32_t> ex(static_cast<size_t>(T * k));
        std::vector<float> wt(static_cast<size_t>(T * k));
        route_topk(logits.data(), T, E, k, renorm, ex.data(), wt.data());
        for (int64_t t = 0; t < T; t++) {
          std::vector<int> ids;
          std::vector<double> w;
          double margin;
          ref_route(logits.data() + t * E, E, k, renorm, ids, w, margin);
          if (margin < 1e-6) continue;  // a near-tie: float32 may order it either way
          for (int j = 0; j < k; j++) {
            EXPECT_EQ(ex[static_cast<size_t>(t * k + j)], ids[static_cast<size_t>(j)]) << "E " << E << " k " << k << " t " << t;
            EXPECT_NEAR(wt[static_cast<size_t>(t * k + j)], w[static_cast<size_t>(j)], 2e-6 * w[static_cast<size_t>(j)] + 1e-9);
          }
          if (renorm) {
            double s = 0;
            for (int j = 0; j < k; j++) s += wt[static_cast<size_t>(t * k + j)];
            EXPECT_NEAR(s, 1.0, 1e-6);
          }
          compared++;
        }
      }
  EXPECT_GT(compared, 400);
}

TEST(KernelRouter, TiesGoToTheLowerExpertId) {
  std::vector<float> logits = {0.5f, 2.f, 0.5f, 2.f, 2.f, -1.f};
  std::vector<int32_t> ex(3);
  std::vector<float> wt(3);
  route_topk(logits.data(), 1, 6, 3, false, ex.data(), wt.data());
  EXPECT_EQ(ex, (std::vector<int32_t>{1, 3, 4}));
  EXPECT_EQ(wt[0], wt[1]);
  route_topk(logits.data(), 1, 6, 2, true, ex.data(), wt.data());
  EXPECT_EQ(ex[0], 1);
  EXPECT_EQ(ex[1], 3);
  EXPECT_FLOAT_EQ(wt[0], 0.5f);
}

// Naive causal grouped-query attention in float64: query head h reads kv head h / (H / KV).
void ref_attention(const AttentionShape& s, const float* q, int64_t T, int64_t pos0, const float* kc, const float* vc,
                   std::vector<double>& out) {
  const int hd = s.head_dim, group = s.num_heads / s.num_kv_heads;
  const int64_t qd = int64_t{s.num_heads} * hd, kvd = int64_t{s.num_kv_heads} * hd;
  out.assign(static_cast<size_t>(T * qd), 0.0);
  for (int64_t t = 0; t < T; t++)
    for (int h = 0; h < s.num_heads; h++) {
      int g = h / group;
      int64_t p = pos0 + t;
      std::vector<double> sc(static_cast<size_t>(p + 1));
      double mx = -INFINITY;
      for (int64_t j = 0; j <= p; j++) {
        double d = 0;
        for (int i = 0; i < hd; i++) d += static_cast<double>(q[t * qd + h * hd + i]) * kc[j * kvd + g * hd + i];
        sc[static_cast<size_t>(j)] = d / std::sqrt(static_cast<double>(hd));
        mx = std::max(mx, sc[static_cast<size_t>(j)]);
      }
      double sum = 0;
      for (auto& v : sc) sum += (v = std::exp(v - mx));
      for (int64_t j = 0; j <= p; j++)
        for (int i = 0; i < hd; i++)
          out[static_cast<size_t>(t * qd + h * hd + i)] += sc[static_cast<size_t>(j)] / sum * vc[j * kvd + g * hd + i];
    }
}

TEST(KernelAttention, MatchesNaiveFloat64CausalGqa) {
  ThreadPool pool(2);
  for (AttentionShape s : {AttentionShape{4, 4, 16}, AttentionShape{6, 2, 32}, AttentionShape{6, 3, 8}, AttentionShape{5, 1, 24}})
    for (auto [T, pos0] : {std::pair<int64_t, int64_t>{1, 0}, {7, 0}, {1, 9}, {4, 5}}) {
      const int64_t qd = int64_t{s.num_heads} * s.head_dim, kvd = int64_t{s.num_kv_heads} * s.head_dim, S = pos0 + T;
      std::vector<float> q = randn(static_cast<size_t>(T * qd), 1 + static_cast<uint64_t>(T), 1.5f);
      std::vector<float> kc = randn(static_cast<size_t>(S * kvd), 2), vc = randn(static_cast<size_t>(S * kvd), 3);
      // Rows past the query's position must not be read: poison them.
      std::vector<float> kbig = kc, vbig = vc;
      kbig.resize(static_cast<size_t>((S + 3) * kvd), NAN);
      vbig.resize(kbig.size(), NAN);
      std::vector<float> out(static_cast<size_t>(T * qd));
      attention(pool, s, q.data(), T, pos0, kbig.data(), vbig.data(), out.data());
      std::vector<double> ref;
      ref_attention(s, q.data(), T, pos0, kc.data(), vc.data(), ref);
      for (size_t i = 0; i < out.size(); i++)
        ASSERT_NEAR(out[i], ref[i], 2e-5 * (1 + std::fabs(ref[i])))
            << "heads " << s.num_heads << "/" << s.num_kv_heads << " hd " << s.head_dim << " T " << T << " pos0 " << pos0 << " i " << i;
    }
}

TEST(KernelAttention, PrefillRowEqualsDecodeRowAndThreadCountDoesNotMatter) {
  ThreadPool p1(1), p3(3);
  AttentionShape s{6, 2, 16};
  const int64_t T = 9, qd = 96, kvd = 32;
  std::vector<float> q = randn(static_cast<size_t>(T * qd), 4), kc = randn(static_cast<size_t>(T * kvd), 5),
                     vc = randn(static_cast<size_t>(T * kvd), 6);
  std::vector<float> a(static_cast<size_t>(T * qd)), b(a.size());
  attention(p1, s, q.data(), T, 0, kc.data(), vc.data(), a.data());
  attention(p3, s, q.data(), T, 0, kc.data(), vc.data(), b.data());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
  for (int64_t t = 0; t < T; t++) {
    std::vector<float> one(static_cast<size_t>(qd));
    attention(p3, s, q.data() + t * qd, 1, t, kc.data(), vc.data(), one.data());
    EXPECT_EQ(std::memcmp(one.data(), a.data() + t * qd, static_cast<size_t>(qd) * 4), 0) << "position " << t;
  }
}

TEST(CombineExpertOutputs, SumsInAscendingExpertIdFromZero) {
  // Values where float32 addition order changes the result: 1e8 + 1 - 1e8.
  const int H = 3, k = 3;
  const int32_t experts[] = {5, 1, 3, /* token 1 */ 0, 7, 2};
  const float slots[] = {
      // token 0: slot 0 (expert 5), slot 1 (expert 1), slot 2 (expert 3)
      -1e8f, 1.f, 0.5f,  /**/ 1e8f, 2.f, 0.25f,  /**/ 1.f, -1e8f, 0.125f,
      // token 1: experts 0, 7, 2
      1.f, 3.f, 1e8f,    /**/ 1e-8f, -3.f, 1.f,  /**/ -1.f, 1e8f, -1e8f};
  std::vector<float> out(2 * H, 99.f);
  combine_expert_outputs(slots, experts, 2, k, H, out.data());
  // The reference order: index_add_ of the experts by ascending id onto zeros, in float32.
  auto ordered = [&](int t) {
    std::vector<int> ord(k);
    std::iota(ord.begin(), ord.end(), 0);
    std::sort(ord.begin(), ord.end(), [&](int a, int b) { return experts[t * k + a] < experts[t * k + b]; });
    return ord;
  };
  for (int t = 0; t < 2; t++)
    for (int c = 0; c < H; c++) {
      float acc = 0.f;
      for (int j : ordered(t)) acc = acc + slots[(t * k + j) * H + c];
      EXPECT_EQ(out[static_cast<size_t>(t * H + c)], acc) << "token " << t << " column " << c;
    }
  // Spelled out for token 0, column 0: experts 1, 3, 5 -> 0 + 1e8 + 1 - 1e8 = 0 in float32
  // (slot order would give -1e8 + 1e8 + 1 = 1).
  EXPECT_EQ(out[0], 0.f);
  // Token 0, column 1: 0 + 2 + (-1e8) + 1 = -1e8 (2 and 1 vanish against 1e8).
  EXPECT_EQ(out[1], -1e8f);
}

}  // namespace
}  // namespace segpipe
