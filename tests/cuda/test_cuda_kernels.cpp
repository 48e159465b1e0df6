// Parity of every CUDA kernel family with its CPU reference (segments/kernels/cpu), over several
// shapes, on fresh random inputs, with poisoned outputs (an unwritten element is NaN and fails).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <string>
#include <thread>

#include "gpu_kernels_arg.h"
#include "gpu_test.h"
#include "segments/kernels/cpu/attention.h"
#include "segments/kernels/cpu/linear.h"
#include "segments/kernels/cpu/rmsnorm.h"
#include "segments/kernels/cpu/rope.h"
#include "segments/kernels/cpu/router.h"
#include "segments/kernels/cpu/swiglu.h"
#include "segments/kernels/cuda/attention.cuh"
#include "segments/kernels/cuda/convert.cuh"
#include "segments/kernels/cuda/embed.cuh"
#include "segments/kernels/cuda/gemm.cuh"
#include "segments/kernels/cuda/gemv.cuh"
#include "segments/core/finite.h"
#include "segments/kernels/cuda/greedy.cuh"
#include "segments/kernels/cuda/moe.cuh"
#include "segments/kernels/cuda/moe_grouped.cuh"
#include "segments/kernels/cuda/norm.cuh"
#include "segments/kernels/cuda/rope.cuh"
#include "segments/kernels/cuda/router.cuh"
#include "segments/kernels/cuda/swiglu.cuh"
#include "segments/kernels/cuda/synthetic.cuh"
#include "segments/kinds/experts.h"
#include "segments/model/synthetic.h"

using namespace segpipe;
using namespace segpipe::gputest;

namespace {

std::mt19937 rng(20261126);
ThreadPool& pool() {
  static ThreadPool p(1);
  return p;
}
const char* dn(DType t) { return t == DType::F32 ? "f32" : "bf16"; }

void test_gemm(Checks& c, cuda::Context& ctx) {
  for (DType dt : {DType::F32, DType::BF16})
    for (auto [T, rows, cols] : {std::tuple{1, 48, 64}, {7, 256, 200}, {64, 96, 512}, {3, 1000, 2048}}) {
      // bf16 operands are exact bf16 values on both sides: only the summation order differs.
      auto x = randn(size_t(T) * cols, rng), w = randn(size_t(rows) * cols, rng, 0.05f);
      if (dt == DType::BF16) x = round_bf16(x), w = round_bf16(w);
      std::vector<float> ref(size_t(T) * rows);
      linear(pool(), x.data(), T, Mat{w.data(), DType::F32, rows, cols}, ref.data());
      Dev dx(x, dt), dw(w, dt);
      Dev y = Dev::poisoned(ref.size(), DType::F32);
      cuda::gemm_xwT(ctx.cublas(), dx.p(), dw.p(), dt, T, rows, cols, y.f(), rows, 0.0f);
      double e = rel_l2(y.host().data(), ref.data(), ref.size());
      c.expect(e < 1e-5, "gemm %s T=%d rows=%d cols=%d rel_l2=%.2e", dn(dt), T, rows, cols, e);
      // beta = 1 accumulates into y (the residual add of o_proj and down_proj)
      Dev acc(x.size() ? std::vector<float>(ref.size(), 1.0f) : std::vector<float>{}, DType::F32);
      cuda::gemm_xwT(ctx.cublas(), dx.p(), dw.p(), dt, T, rows, cols, acc.f(), rows, 1.0f);
      std::vector<float> ref1 = ref;
      for (auto& v : ref1) v += 1.0f;
      e = rel_l2(acc.host().data(), ref1.data(), ref1.size());
      c.expect(e < 1e-5, "gemm %s beta=1 T=%d rows=%d rel_l2=%.2e", dn(dt), T, rows, e);
    }
}

void test_rmsnorm(Checks& c, cudaStream_t s) {
  for (DType dt : {DType::F32, DType::BF16})
    for (auto [rows, n] : {std::pair{1, 64}, {5, 2048}, {33, 100}, {3, 3000}}) {
      auto x = randn(size_t(rows) * n, rng, 3.0f), w = randn(size_t(n), rng);
      std::vector<float> ref(x.size());
      rmsnorm(x.data(), rows, n, w.data(), 1e-6f, ref.data());
      Dev dx(x, DType::F32), dw(w, DType::F32), y = Dev::poisoned(x.size(), dt);
      cuda::rmsnorm(dx.f(), rows, n, dw.f(), 1e-6f, y.p(), dt, s);
      double e = rel_l2(y.host().data(), ref.data(), ref.size());
      double tol = dt == DType::F32 ? 1e-6 : 5e-3;
      c.expect(e < tol, "rmsnorm -> %s rows=%d n=%d rel_l2=%.2e", dn(dt), rows, n, e);
      if (dt == DType::F32) {  // in place (y = x): the same bits
        Dev xy(x, DType::F32);
        cuda::rmsnorm(xy.f(), rows, n, dw.f(), 1e-6f, xy.p(), dt, s);
        const auto a = y.host(), b = xy.host();
        c.expect(std::memcmp(a.data(), b.data(), a.size() * 4) == 0, "rmsnorm in place rows=%d n=%d: %s", rows, n,
                 std::memcmp(a.data(), b.data(), a.size() * 4) == 0 ? "identical" : "DIFFERS");
      }
    }
}

void test_qk_norm_rope(Checks& c, cudaStream_t s) {
  for (auto [nh, nkv, hd, T, pos0] : {std::tuple{4, 2, 16, 6, 0}, {32, 4, 128, 1, 37}, {8, 8, 64, 9, 1000}}) {
    const int qd = nh * hd, kvd = nkv * hd, row = qd + 2 * kvd, max_seq = pos0 + T + 3;
    auto qkv = randn(size_t(T) * row, rng, 2.0f), qn = randn(size_t(hd), rng), kn = randn(size_t(hd), rng);
    Rope rope(hd, 1e6);
    std::vector<float> q_ref(size_t(T) * qd), k_ref(size_t(T) * kvd), v_ref(size_t(T) * kvd);
    for (int t = 0; t < T; t++) {
      const float* r = qkv.data() + size_t(t) * row;
      rmsnorm(r, nh, hd, qn.data(), 1e-6f, q_ref.data() + size_t(t) * qd);
      rmsnorm(r + qd, nkv, hd, kn.data(), 1e-6f, k_ref.data() + size_t(t) * kvd);
      std::copy(r + qd + kvd, r + row, v_ref.begin() + size_t(t) * kvd);
      rope.apply(q_ref.data() + size_t(t) * qd, nh, pos0 + t);
      rope.apply(k_ref.data() + size_t(t) * kvd, nkv, pos0 + t);
    }
    auto inv = cuda::rope_inv_freq(hd, 1e6);
    Dev dqkv(qkv, DType::F32), dqn(qn, DType::F32), dkn(kn, DType::F32), dinv(inv, DType::F32);
    auto dpos = upload(std::vector<int32_t>{pos0});
    Dev q = Dev::poisoned(q_ref.size(), DType::F32), kc = Dev::poisoned(size_t(max_seq) * kvd, DType::F32),
        vc = Dev::poisoned(size_t(max_seq) * kvd, DType::F32);
    cuda::qk_norm_rope_kv(dqkv.f(), T, dpos.get(), {nh, nkv, hd}, nullptr, dqn.f(), dkn.f(), 1e-6f, dinv.f(), q.f(),
                          kc.f(), vc.f(), s);
    auto kh = kc.host(), vh = vc.host();
    std::vector<float> k_got(kh.begin() + size_t(pos0) * kvd, kh.begin() + size_t(pos0 + T) * kvd),
        v_got(vh.begin() + size_t(pos0) * kvd, vh.begin() + size_t(pos0 + T) * kvd);
    double eq = rel_l2(q.host().data(), q_ref.data(), q_ref.size()), ek = rel_l2(k_got.data(), k_ref.data(), k_ref.size()),
           ev = rel_l2(v_got.data(), v_ref.data(), v_ref.size());
    c.expect(eq < 1e-5 && ek < 1e-5 && ev == 0, "qk_norm_rope_kv heads=%d/%d hd=%d T=%d pos0=%d q=%.2e k=%.2e v=%.2e", nh,
             nkv, hd, T, pos0, eq, ek, ev);
    // rows outside pos0..pos0+T-1 stay untouched (poison)
    c.expect(std::isnan(kh[size_t(pos0 + T) * kvd]), "qk_norm_rope_kv writes only its rows");
    // The flash prefill's variant: the same float32 cache, q and the new K/V rows as the bf16
    // roundings of the float32 results (bit for bit), no other row of the bf16 copies written.
    Dev qb = Dev::poisoned(q_ref.size(), DType::BF16), kc2 = Dev::poisoned(size_t(max_seq) * kvd, DType::F32),
        vc2 = Dev::poisoned(size_t(max_seq) * kvd, DType::F32), kb = Dev::poisoned(size_t(max_seq) * kvd, DType::BF16),
        vb = Dev::poisoned(size_t(max_seq) * kvd, DType::BF16);
    cuda::qk_norm_rope_kv_bf16(dqkv.f(), T, dpos.get(), {nh, nkv, hd}, nullptr, dqn.f(), dkn.f(), 1e-6f, dinv.f(),
                               qb.p(), kc2.f(), vc2.f(), kb.p(), vb.p(), s);
    auto kh2 = kc2.host(), vh2 = vc2.host(), kbh = kb.host(), vbh = vb.host();
    const auto q_round = round_bf16(q.host()), qbh = qb.host();
    const bool cache_same = std::memcmp(kh.data(), kh2.data(), kh.size() * 4) == 0 &&
                            std::memcmp(vh.data(), vh2.data(), vh.size() * 4) == 0;
    const bool q_same = std::memcmp(q_round.data(), qbh.data(), qbh.size() * 4) == 0;
    bool mirror_same = true;
    for (size_t i = 0; i < kbh.size(); i++) {
      const bool row_new = i >= size_t(pos0) * kvd && i < size_t(pos0 + T) * kvd;
      if (row_new) {
        const auto kr = round_bf16({kh[i]}), vr = round_bf16({vh[i]});
        mirror_same &= std::memcmp(&kr[0], &kbh[i], 4) == 0 && std::memcmp(&vr[0], &vbh[i], 4) == 0;
      } else {
        mirror_same &= std::isnan(kbh[i]) && std::isnan(vbh[i]);
      }
    }
    c.expect(cache_same && q_same && mirror_same,
             "qk_norm_rope_kv_bf16 heads=%d/%d hd=%d T=%d pos0=%d: float32 cache %s, bf16 q %s, bf16 K/V rows %s", nh,
             nkv, hd, T, pos0, cache_same ? "identical" : "DIFFERS", q_same ? "= rounded q" : "DIFFERS",
             mirror_same ? "= rounded cache rows, others untouched" : "DIFFER");
  }
}

// qk_norm_rope_kv's per-token kernel (the default) against its warp-per-head one (norm_rope_head,
// the decode attention's own step): every bit of q, of the float32 cache and of the bf16 copies
// the same, over head shapes (the per-token kernel takes each: head_dim % 4 == 0, cudaMalloc'd
// buffers) and positions up to where the angles leave sinf/cosf's fast range reduction (|x| >
// 105615). The caches are as long as the position needs, so the big positions use small kv rows.
void test_qk_norm_rope_kernels(Checks& c, cudaStream_t s) {
  for (auto [nh, nkv, hd] : {std::tuple{32, 4, 128}, {16, 2, 64}, {4, 2, 16}, {8, 8, 256}, {6, 3, 12}})
    for (int pos0 : {0, 1000, 30000, 200000}) {
      const int T = 37, qd = nh * hd, kvd = nkv * hd, row = qd + 2 * kvd, max_seq = pos0 + T + 2;
      if (size_t(max_seq) * kvd > (size_t(1) << 24)) continue;
      auto qkv = randn(size_t(T) * row, rng, 2.0f), qn = randn(size_t(hd), rng), kn = randn(size_t(hd), rng);
      auto inv = cuda::rope_inv_freq(hd, 1e6);
      Dev dqkv(qkv, DType::F32), dqn(qn, DType::F32), dkn(kn, DType::F32), dinv(inv, DType::F32);
      auto dpos = upload(std::vector<int32_t>{pos0});
      bool same32 = true, same16 = true;
      std::vector<std::vector<float>> got[2];
      for (int per_head = 0; per_head < 2; per_head++) {
        Dev q = Dev::poisoned(size_t(T) * qd, DType::F32), kc = Dev::poisoned(size_t(max_seq) * kvd, DType::F32),
            vc = Dev::poisoned(size_t(max_seq) * kvd, DType::F32);
        cuda::qk_norm_rope_kv(dqkv.f(), T, dpos.get(), {nh, nkv, hd}, nullptr, dqn.f(), dkn.f(), 1e-6f, dinv.f(),
                              q.f(), kc.f(), vc.f(), s, per_head == 1);
        Dev qb = Dev::poisoned(size_t(T) * qd, DType::BF16), kc2 = Dev::poisoned(size_t(max_seq) * kvd, DType::F32),
            vc2 = Dev::poisoned(size_t(max_seq) * kvd, DType::F32),
            kb = Dev::poisoned(size_t(max_seq) * kvd, DType::BF16),
            vb = Dev::poisoned(size_t(max_seq) * kvd, DType::BF16);
        cuda::qk_norm_rope_kv_bf16(dqkv.f(), T, dpos.get(), {nh, nkv, hd}, nullptr, dqn.f(), dkn.f(), 1e-6f,
                                   dinv.f(), qb.p(), kc2.f(), vc2.f(), kb.p(), vb.p(), s, per_head == 1);
        got[per_head] = {q.host(), kc.host(), vc.host(), qb.host(), kc2.host(), vc2.host(), kb.host(), vb.host()};
      }
      for (size_t i = 0; i < got[0].size(); i++) {
        const bool eq = std::memcmp(got[0][i].data(), got[1][i].data(), got[0][i].size() * 4) == 0;
        (i < 3 ? same32 : same16) &= eq;
      }
      c.expect(same32 && same16,
               "qk_norm_rope_kv per-token = per-head kernel heads=%d/%d hd=%d T=%d pos0=%d: f32 %s, bf16 %s", nh, nkv,
               hd, T, pos0, same32 ? "identical" : "DIFFERS", same16 ? "identical" : "DIFFERS");
    }
}

// The CPU reference of one decode token's attention from the raw q/k/v row: q/k-norm, RoPE at pos0,
// the new K/V row placed at pos0 of copies of the caches, attention over rows 0..pos0.
std::vector<float> cpu_decode_attention(const std::vector<float>& qkv, const std::vector<float>& qn,
                                        const std::vector<float>& kn, const std::vector<float>& kc,
                                        const std::vector<float>& vc, int nh, int nkv, int hd, int pos0) {
  const int qd = nh * hd, kvd = nkv * hd;
  Rope rope(hd, 1e6);
  std::vector<float> qr(static_cast<size_t>(qd)), kr(static_cast<size_t>(kvd));
  rmsnorm(qkv.data(), nh, hd, qn.data(), 1e-6f, qr.data());
  rmsnorm(qkv.data() + qd, nkv, hd, kn.data(), 1e-6f, kr.data());
  rope.apply(qr.data(), nh, pos0);
  rope.apply(kr.data(), nkv, pos0);
  auto kref = kc, vref = vc;
  std::copy(kr.begin(), kr.end(), kref.begin() + size_t(pos0) * kvd);
  std::copy(qkv.begin() + qd + kvd, qkv.end(), vref.begin() + size_t(pos0) * kvd);
  std::vector<float> out(static_cast<size_t>(qd));
  attention(pool(), {nh, nkv, hd}, qr.data(), 1, pos0, kref.data(), vref.data(), out.data());
  return out;
}

void test_attention(Checks& c, cuda::Context& ctx) {
  cudaStream_t s = ctx.stream();
  const cuda::KernelPath& kp = ctx.kernels();
  for (DType ot : {DType::F32, DType::BF16})
    for (auto [nh, nkv, hd, T, pos0] :
         {std::tuple{4, 2, 16, 5, 3}, {32, 4, 128, 1, 100}, {8, 2, 64, 40, 0}, {32, 4, 128, 17, 500}}) {
      const int qd = nh * hd, kvd = nkv * hd, n = pos0 + T;
      auto q = randn(size_t(T) * qd, rng), kc = randn(size_t(n) * kvd, rng), vc = randn(size_t(n) * kvd, rng);
      std::vector<float> ref(q.size());
      attention(pool(), {nh, nkv, hd}, q.data(), T, pos0, kc.data(), vc.data(), ref.data());
      Dev dq(q, DType::F32), dk(kc, DType::F32), dv(vc, DType::F32), out = Dev::poisoned(q.size(), ot);
      auto dpos = upload(std::vector<int32_t>{pos0});
      float scale = static_cast<float>(std::pow(double(hd), -0.5));
      cuda::attention(dq.f(), T, dpos.get(), {nh, nkv, hd}, dk.f(), dv.f(), scale, out.p(), ot, s);
      double e = rel_l2(out.host().data(), ref.data(), ref.size());
      double tol = ot == DType::F32 ? 1e-5 : 5e-3;
      c.expect(e < tol, "attention -> %s heads=%d/%d hd=%d T=%d pos0=%d rel_l2=%.2e", dn(ot), nh, nkv, hd, T, pos0, e);
    }
  // decode with the keys split over blocks (flash-decoding), short and long contexts, twice each
  // (the per-head counters must be ready again)
  for (DType ot : {DType::F32, DType::BF16})
    for (auto [nh, nkv, hd, pos0] : {std::tuple{32, 4, 128, 0}, {32, 4, 128, 5}, {32, 4, 128, 100}, {4, 2, 16, 130},
                                     {32, 4, 128, 3000}, {8, 8, 64, 127}}) {
      const int qd = nh * hd, kvd = nkv * hd, n = pos0 + 1;
      auto q = randn(size_t(qd), rng), kc = randn(size_t(n) * kvd, rng), vc = randn(size_t(n) * kvd, rng);
      std::vector<float> ref(q.size());
      attention(pool(), {nh, nkv, hd}, q.data(), 1, pos0, kc.data(), vc.data(), ref.data());
      Dev dq(q, DType::F32), dk(kc, DType::F32), dv(vc, DType::F32);
      auto dpos = upload(std::vector<int32_t>{pos0});
      cuda::AttnShape as{nh, nkv, hd};
      cuda::Buffer<float> part(cuda::attention_decode_scratch_floats(as));
      cuda::Buffer<unsigned> cnt(static_cast<size_t>(nh));
      SEGPIPE_CUDA_CHECK(cudaMemset(cnt.get(), 0, cnt.bytes()));
      float scale = static_cast<float>(std::pow(double(hd), -0.5));
      double e = 0;
      for (int rep = 0; rep < 2; rep++) {
        Dev out = Dev::poisoned(q.size(), ot);
        cuda::attention_decode(dq.f(), dpos.get(), as, dk.f(), dv.f(), scale, out.p(), ot, part.get(), cnt.get(), kp,
                               s);
        e = std::max(e, rel_l2(out.host().data(), ref.data(), ref.size()));
      }
      double tol = ot == DType::F32 ? 1e-5 : 5e-3;
      c.expect(e < tol, "attention_decode (split) -> %s heads=%d/%d hd=%d pos0=%d rel_l2=%.2e", dn(ot), nh, nkv, hd,
               pos0, e);
    }
  // decode with q/k-norm + RoPE + the KV write folded in: against qk_norm_rope_kv + attention_decode
  // (same arithmetic: q/k rows and cache rows equal, output bit-identical) and the CPU reference
  for (DType ot : {DType::F32, DType::BF16})
    for (auto [nh, nkv, hd, pos0] : {std::tuple{32, 4, 128, 0}, {32, 4, 128, 5}, {32, 4, 128, 100}, {4, 2, 16, 130},
                                     {32, 4, 128, 3000}, {8, 8, 64, 127}}) {
      const int qd = nh * hd, kvd = nkv * hd, row = qd + 2 * kvd, max_seq = pos0 + 3;
      auto qkv = randn(size_t(row), rng, 2.0f), qn = randn(size_t(hd), rng), kn = randn(size_t(hd), rng);
      auto kc = randn(size_t(max_seq) * kvd, rng), vc = randn(size_t(max_seq) * kvd, rng);
      const std::vector<float> ref = cpu_decode_attention(qkv, qn, kn, kc, vc, nh, nkv, hd, pos0);
      auto inv = cuda::rope_inv_freq(hd, 1e6);
      Dev dqkv(qkv, DType::F32), dqn(qn, DType::F32), dkn(kn, DType::F32), dinv(inv, DType::F32);
      Dev k1(kc, DType::F32), v1(vc, DType::F32), k2(kc, DType::F32), v2(vc, DType::F32);
      auto dpos = upload(std::vector<int32_t>{pos0});
      cuda::AttnShape as{nh, nkv, hd};
      cuda::Buffer<float> part(cuda::attention_decode_scratch_floats(as));
      cuda::Buffer<unsigned> cnt(static_cast<size_t>(nh));
      SEGPIPE_CUDA_CHECK(cudaMemset(cnt.get(), 0, cnt.bytes()));
      const float scale = static_cast<float>(std::pow(double(hd), -0.5));
      Dev q = Dev::poisoned(size_t(qd), DType::F32), o1 = Dev::poisoned(size_t(qd), ot);
      cuda::qk_norm_rope_kv(dqkv.f(), 1, dpos.get(), {nh, nkv, hd}, nullptr, dqn.f(), dkn.f(), 1e-6f, dinv.f(), q.f(),
                            k1.f(), v1.f(), s);
      cuda::attention_decode(q.f(), dpos.get(), as, k1.f(), v1.f(), scale, o1.p(), ot, part.get(), cnt.get(), kp, s);
      auto a = o1.host();
      bool same = true;
      double e = 0;
      for (int rep = 0; rep < 2; rep++) {
        Dev o2 = Dev::poisoned(size_t(qd), ot);
        cuda::attention_decode_rope(dqkv.f(), dpos.get(), as, nullptr, dqn.f(), dkn.f(), 1e-6f, dinv.f(), k2.f(),
                                    v2.f(), scale, o2.p(), ot, part.get(), cnt.get(), k2.p(), uint64_t(k2.n) * 4, kp,
                                    s);
        auto b = o2.host();
        same &= std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
        e = std::max(e, rel_l2(b.data(), ref.data(), ref.size()));
      }
      auto kh1 = k1.host(), kh2 = k2.host(), vh1 = v1.host(), vh2 = v2.host();
      const bool cache_same = std::memcmp(kh1.data(), kh2.data(), kh1.size() * 4) == 0 &&
                              std::memcmp(vh1.data(), vh2.data(), vh1.size() * 4) == 0;
      double tol = ot == DType::F32 ? 1e-5 : 5e-3;
      c.expect(e < tol && same && cache_same,
               "attention_decode_rope -> %s heads=%d/%d hd=%d pos0=%d rel_l2=%.2e output %s, K/V cache %s", dn(ot), nh,
               nkv, hd, pos0, e, same ? "bit-identical to rope + attention_decode" : "DIFFERS",
               cache_same ? "identical" : "DIFFERS");
    }
}

// The CPU reference of the q/k step of one token as the CPU layer takes it (segments/kinds/layers.cpp):
// the q/k/v biases added (bias empty: none), q/k RMSNorm (qn empty: none), RoPE at pos; q, k and v
// out.
void cpu_qk_step(const float* row, const std::vector<float>& bias, const std::vector<float>& qn,
                 const std::vector<float>& kn, int nh, int nkv, int hd, int64_t pos, float* q, float* k, float* v) {
  const int qd = nh * hd, kvd = nkv * hd;
  std::vector<float> r(row, row + qd + 2 * kvd);
  if (!bias.empty())
    for (size_t i = 0; i < r.size(); i++) r[i] = r[i] + bias[i];
  std::copy(r.begin(), r.begin() + qd, q);
  std::copy(r.begin() + qd, r.begin() + qd + kvd, k);
  std::copy(r.begin() + qd + kvd, r.end(), v);
  if (!qn.empty()) {
    rmsnorm(q, nh, hd, qn.data(), 1e-6f, q);
    rmsnorm(k, nkv, hd, kn.data(), 1e-6f, k);
  }
  Rope rope(hd, 1e6);
  rope.apply(q, nh, pos);
  rope.apply(k, nkv, pos);
}

// The q/k step as the layer description parametrizes it (Qwen2-MoE: q/k/v biases, no q/k norm; and
// the other combinations the flags allow): qk_norm_rope_kv (both its kernels, float32 and the bf16
// mirror) and the decode attention with the step folded in, against the CPU reference, and against
// each other bit for bit, over head shapes (MHA and GQA, head_dim 16 as the tiny checkpoints, 128 as
// Qwen1.5-MoE, 10 for the warp-per-head kernel alone) and positions.
void test_qk_step_variants(Checks& c, cuda::Context& ctx) {
  cudaStream_t s = ctx.stream();
  const cuda::KernelPath& kp = ctx.kernels();
  for (auto [use_bias, use_norm] : {std::pair{true, false}, {false, false}, {true, true}})
    for (auto [nh, nkv, hd, T, pos0] : {std::tuple{4, 4, 16, 5, 3}, {6, 2, 16, 7, 0}, {16, 16, 128, 1, 100},
                                       {32, 4, 128, 37, 1000}, {4, 2, 10, 3, 5}}) {
      const int qd = nh * hd, kvd = nkv * hd, row = qd + 2 * kvd, max_seq = pos0 + T + 3;
      auto qkv = randn(size_t(T) * row, rng, 2.0f);
      const std::vector<float> bias = use_bias ? randn(size_t(row), rng, 0.5f) : std::vector<float>{};
      const std::vector<float> qn = use_norm ? randn(size_t(hd), rng) : std::vector<float>{};
      const std::vector<float> kn = use_norm ? randn(size_t(hd), rng) : std::vector<float>{};
      std::vector<float> q_ref(size_t(T) * qd), k_ref(size_t(T) * kvd), v_ref(size_t(T) * kvd);
      for (int t = 0; t < T; t++)
        cpu_qk_step(qkv.data() + size_t(t) * row, bias, qn, kn, nh, nkv, hd, pos0 + t, q_ref.data() + size_t(t) * qd,
                    k_ref.data() + size_t(t) * kvd, v_ref.data() + size_t(t) * kvd);
      auto inv = cuda::rope_inv_freq(hd, 1e6);
      Dev dqkv(qkv, DType::F32), dinv(inv, DType::F32);
      Dev db = use_bias ? Dev(bias, DType::F32) : Dev(), dqn = use_norm ? Dev(qn, DType::F32) : Dev(),
          dkn = use_norm ? Dev(kn, DType::F32) : Dev();
      const float* bp = use_bias ? db.f() : nullptr;
      const float* qnp = use_norm ? dqn.f() : nullptr;
      const float* knp = use_norm ? dkn.f() : nullptr;
      auto dpos = upload(std::vector<int32_t>{pos0});
      // both kernels (per-token where the shape allows it, warp-per-head), float32 and the bf16 mirror
      std::vector<std::vector<float>> got[2];
      for (int per_head = 0; per_head < 2; per_head++) {
        Dev q = Dev::poisoned(q_ref.size(), DType::F32), kc = Dev::poisoned(size_t(max_seq) * kvd, DType::F32),
            vc = Dev::poisoned(size_t(max_seq) * kvd, DType::F32);
        cuda::qk_norm_rope_kv(dqkv.f(), T, dpos.get(), {nh, nkv, hd}, bp, qnp, knp, 1e-6f, dinv.f(), q.f(), kc.f(),
                              vc.f(), s, per_head == 1);
        Dev qb = Dev::poisoned(q_ref.size(), DType::BF16), kc2 = Dev::poisoned(size_t(max_seq) * kvd, DType::F32),
            vc2 = Dev::poisoned(size_t(max_seq) * kvd, DType::F32),
            kb = Dev::poisoned(size_t(max_seq) * kvd, DType::BF16),
            vb = Dev::poisoned(size_t(max_seq) * kvd, DType::BF16);
        cuda::qk_norm_rope_kv_bf16(dqkv.f(), T, dpos.get(), {nh, nkv, hd}, bp, qnp, knp, 1e-6f, dinv.f(), qb.p(),
                                   kc2.f(), vc2.f(), kb.p(), vb.p(), s, per_head == 1);
        got[per_head] = {q.host(), kc.host(), vc.host(), qb.host(), kc2.host(), vc2.host(), kb.host(), vb.host()};
      }
      const auto& g = got[0];
      std::vector<float> k_got(g[1].begin() + size_t(pos0) * kvd, g[1].begin() + size_t(pos0 + T) * kvd),
          v_got(g[2].begin() + size_t(pos0) * kvd, g[2].begin() + size_t(pos0 + T) * kvd);
      const double eq = rel_l2(g[0].data(), q_ref.data(), q_ref.size()),
                   ek = rel_l2(k_got.data(), k_ref.data(), k_ref.size());
      // v is src + bias, one rounding on both sides
      const bool v_same = std::memcmp(v_got.data(), v_ref.data(), v_ref.size() * 4) == 0;
      bool kernels_same = true;
      for (size_t i = 0; i < g.size(); i++)
        kernels_same &= std::memcmp(got[0][i].data(), got[1][i].data(), got[0][i].size() * 4) == 0;
      const bool untouched = std::isnan(g[1][size_t(pos0 + T) * kvd]) && std::isnan(g[2][size_t(pos0 + T) * kvd]);
      const bool mirror_cache_same = std::memcmp(g[1].data(), g[4].data(), g[1].size() * 4) == 0 &&
                                     std::memcmp(g[2].data(), g[5].data(), g[2].size() * 4) == 0;
      const auto q_round = round_bf16(g[0]);
      const bool mirror_q_same = std::memcmp(q_round.data(), g[3].data(), q_round.size() * 4) == 0;
      c.expect(eq < 1e-5 && ek < 1e-5 && v_same && kernels_same && untouched && mirror_cache_same && mirror_q_same,
               "qk step bias=%d norm=%d heads=%d/%d hd=%d T=%d pos0=%d: q rel_l2=%.2e k=%.2e v %s; per-token = "
               "per-head %s; bf16 mirror %s",
               int(use_bias), int(use_norm), nh, nkv, hd, T, pos0, eq, ek, v_same ? "identical" : "DIFFERS",
               kernels_same ? "identical" : "DIFFERS", mirror_cache_same && mirror_q_same ? "consistent" : "DIFFERS");
      // Decode with the step folded in: one token at pos0 over a random cache, against the step +
      // attention_decode (bit for bit, output and cache) and the CPU reference.
      for (DType ot : {DType::F32, DType::BF16}) {
        const std::vector<float> row1(qkv.begin(), qkv.begin() + row);
        auto kc = randn(size_t(max_seq) * kvd, rng), vc = randn(size_t(max_seq) * kvd, rng);
        std::vector<float> q1(static_cast<size_t>(qd)), k1r(static_cast<size_t>(kvd)), v1r(static_cast<size_t>(kvd));
        cpu_qk_step(row1.data(), bias, qn, kn, nh, nkv, hd, pos0, q1.data(), k1r.data(), v1r.data());
        auto kref = kc, vref = vc;
        std::copy(k1r.begin(), k1r.end(), kref.begin() + size_t(pos0) * kvd);
        std::copy(v1r.begin(), v1r.end(), vref.begin() + size_t(pos0) * kvd);
        std::vector<float> ref(static_cast<size_t>(qd));
        attention(pool(), {nh, nkv, hd}, q1.data(), 1, pos0, kref.data(), vref.data(), ref.data());
        Dev dk1(kc, DType::F32), dv1(vc, DType::F32), dk2(kc, DType::F32), dv2(vc, DType::F32);
        cuda::AttnShape as{nh, nkv, hd};
        cuda::Buffer<float> part(cuda::attention_decode_scratch_floats(as));
        cuda::Buffer<unsigned> cnt(static_cast<size_t>(nh));
        SEGPIPE_CUDA_CHECK(cudaMemset(cnt.get(), 0, cnt.bytes()));
        const float scale = static_cast<float>(std::pow(double(hd), -0.5));
        Dev q = Dev::poisoned(size_t(qd), DType::F32), o1 = Dev::poisoned(size_t(qd), ot),
            o2 = Dev::poisoned(size_t(qd), ot);
        cuda::qk_norm_rope_kv(dqkv.f(), 1, dpos.get(), {nh, nkv, hd}, bp, qnp, knp, 1e-6f, dinv.f(), q.f(), dk1.f(),
                              dv1.f(), s);
        cuda::attention_decode(q.f(), dpos.get(), as, dk1.f(), dv1.f(), scale, o1.p(), ot, part.get(), cnt.get(), kp,
                               s);
        cuda::attention_decode_rope(dqkv.f(), dpos.get(), as, bp, qnp, knp, 1e-6f, dinv.f(), dk2.f(), dv2.f(), scale,
                                    o2.p(), ot, part.get(), cnt.get(), nullptr, 0, kp, s);
        const auto a = o1.host(), b = o2.host();
        const auto kh1 = dk1.host(), kh2 = dk2.host(), vh1 = dv1.host(), vh2 = dv2.host();
        const bool same = std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
        const bool cache_same = std::memcmp(kh1.data(), kh2.data(), kh1.size() * 4) == 0 &&
                                std::memcmp(vh1.data(), vh2.data(), vh1.size() * 4) == 0;
        const double e = rel_l2(b.data(), ref.data(), ref.size());
        const double tol = ot == DType::F32 ? 1e-5 : 5e-3;
        c.expect(e < tol && same && cache_same,
                 "attention_decode_rope bias=%d norm=%d -> %s heads=%d/%d hd=%d pos0=%d rel_l2=%.2e output %s, K/V "
                 "cache %s",
                 int(use_bias), int(use_norm), dn(ot), nh, nkv, hd, pos0, e,
                 same ? "bit-identical to the step + attention_decode" : "DIFFERS",
                 cache_same ? "identical" : "DIFFERS");
      }
    }
}

// The fused (flash) prefill attention: bf16 operands (Q, K, V, P rounded), fp32 accumulation, against
// the CPU reference on the unrounded float32 inputs. Shapes: GQA and not, head_dim 64 and 128, T not
// a multiple of the 64-row tiles, a cached prefix (pos0 > 0). The kernels the product has: the
// portable (mma.sync) kernel always, and the wgmma kernel where the context's path has it (compute
// capability 9.0, head_dim 128).
void test_attention_flash(Checks& c, cuda::Context& ctx) {
  std::vector<std::pair<const char*, cuda::KernelPath>> paths = {{"mma.sync", cuda::KernelPath{}}};
  if (ctx.kernels().wgmma)
    paths.push_back({"wgmma", ctx.kernels()});
  else
    std::printf("  (wgmma flash kernel: not on this device or path)\n");
  for (DType ot : {DType::BF16, DType::F32})
    for (auto [nh, nkv, hd, T, pos0] : {std::tuple{32, 4, 128, 100, 7}, {8, 2, 64, 130, 300}, {4, 4, 128, 64, 0},
                                       {16, 2, 128, 257, 0}, {32, 4, 128, 600, 24}, {2, 1, 64, 1, 0},
                                       {8, 8, 128, 65, 63}}) {
      const int qd = nh * hd, kvd = nkv * hd, n = pos0 + T;
      auto q = randn(size_t(T) * qd, rng), kc = randn(size_t(n) * kvd, rng), vc = randn(size_t(n) * kvd, rng);
      std::vector<float> ref(q.size());
      attention(pool(), {nh, nkv, hd}, q.data(), T, pos0, kc.data(), vc.data(), ref.data());
      Dev dq(q, DType::F32), dkf(kc, DType::F32), dvf(vc, DType::F32);
      Dev kb = Dev::poisoned(kc.size(), DType::BF16), vb = Dev::poisoned(vc.size(), DType::BF16);
      cuda::convert(dkf.p(), DType::F32, kb.p(), DType::BF16, int64_t(kc.size()), ctx.stream());
      cuda::convert(dvf.p(), DType::F32, vb.p(), DType::BF16, int64_t(vc.size()), ctx.stream());
      // q rounded to bf16 beforehand (as qk_norm_rope_kv_bf16 writes it): the same bits out
      Dev dqb = Dev::poisoned(q.size(), DType::BF16);
      cuda::convert(dq.p(), DType::F32, dqb.p(), DType::BF16, int64_t(q.size()), ctx.stream());
      const float scale = static_cast<float>(std::pow(double(hd), -0.5));
      for (const auto& [kname, path] : paths) {
        if (path.wgmma && hd != 128) continue;  // the mma.sync kernel there, checked above
        double e = 0;
        std::vector<float> first;
        bool same = true;
        for (int rep = 0; rep < 2; rep++) {
          Dev out = Dev::poisoned(q.size(), ot);
          cuda::attention_flash(dq.f(), T, pos0, {nh, nkv, hd}, kb.p(), vb.p(), scale, out.p(), ot, path,
                                ctx.stream());
          std::vector<float> h = out.host();
          e = std::max(e, rel_l2(h.data(), ref.data(), ref.size()));
          if (rep == 0)
            first = h;
          else
            same = std::memcmp(first.data(), h.data(), h.size() * 4) == 0;
        }
        Dev outb = Dev::poisoned(q.size(), ot);
        cuda::attention_flash(dqb.p(), DType::BF16, T, pos0, {nh, nkv, hd}, kb.p(), vb.p(), scale, outb.p(), ot,
                              path, ctx.stream());
        const std::vector<float> hb = outb.host();
        const bool same_qb = std::memcmp(first.data(), hb.data(), hb.size() * 4) == 0;
        c.expect(e < 2e-2 && same && same_qb,
                 "attention_flash [%s] (bf16 tensor cores) -> %s heads=%d/%d hd=%d T=%d pos0=%d rel_l2=%.2e, "
                 "second launch %s, bf16 q %s",
                 kname, dn(ot), nh, nkv, hd, T, pos0, e, same ? "bit-identical" : "DIFFERS",
                 same_qb ? "bit-identical" : "DIFFERS");
      }
    }
}

void test_attention_gemm(Checks& c, cuda::Context& ctx) {
  for (DType ot : {DType::F32, DType::BF16})
    for (auto [nh, nkv, hd, T, pos0] : {std::tuple{4, 2, 16, 70, 0}, {32, 4, 128, 100, 7}, {8, 2, 64, 64, 300}}) {
      const int qd = nh * hd, kvd = nkv * hd, n = pos0 + T;
      auto q = randn(size_t(T) * qd, rng), kc = randn(size_t(n) * kvd, rng), vc = randn(size_t(n) * kvd, rng);
      std::vector<float> ref(q.size());
      attention(pool(), {nh, nkv, hd}, q.data(), T, pos0, kc.data(), vc.data(), ref.data());
      Dev dq(q, DType::F32), dk(kc, DType::F32), dv(vc, DType::F32), out = Dev::poisoned(q.size(), ot);
      Dev scores = Dev::poisoned(size_t(nh) * T * n, DType::F32), of = Dev::poisoned(q.size(), DType::F32);
      float scale = static_cast<float>(std::pow(double(hd), -0.5));
      cuda::attention_gemm(ctx.cublas(), dq.f(), T, pos0, {nh, nkv, hd}, dk.f(), dv.f(), scale, ot == DType::BF16,
                           scores.f(), of.f(), out.p(), ot, ctx.stream());
      double e = rel_l2(out.host().data(), ref.data(), ref.size());
      double tol = ot == DType::F32 ? 1e-5 : 1e-2;
      c.expect(e < tol, "attention_gemm (cuBLAS%s) -> %s heads=%d/%d hd=%d T=%d pos0=%d rel_l2=%.2e",
               ot == DType::BF16 ? ", tf32" : "", dn(ot), nh, nkv, hd, T, pos0, e);
    }
}

void test_router(Checks& c, cudaStream_t s) {
  for (auto [T, E, k, renorm] : {std::tuple{7, 8, 2, true}, {33, 128, 8, true}, {5, 128, 8, false}, {3, 16, 4, true}}) {
    auto l = randn(size_t(T) * E, rng, 2.0f);
    std::vector<int32_t> e_ref(size_t(T) * k);
    std::vector<float> w_ref(size_t(T) * k);
    route_topk(l.data(), T, E, k, renorm, e_ref.data(), w_ref.data());
    Dev dl(l, DType::F32), w = Dev::poisoned(w_ref.size(), DType::F32);
    cuda::Buffer<int32_t> de(e_ref.size());
    cuda::route_topk(dl.f(), T, E, k, renorm, de.get(), w.f(), s);
    auto e_got = download(de, e_ref.size());
    double err = rel_l2(w.host().data(), w_ref.data(), w_ref.size());
    c.expect(e_got == e_ref && err < 1e-6, "route_topk T=%d E=%d k=%d renorm=%d experts %s weights rel_l2=%.2e", T, E,
             k, int(renorm), e_got == e_ref ? "equal" : "DIFFER", err);
  }
}

void test_swiglu(Checks& c, cudaStream_t s) {
  for (DType at : {DType::F32, DType::BF16})
    for (auto [rows, I] : {std::pair{5, 32}, {16, 768}}) {
      auto gu = randn(size_t(rows) * 2 * I, rng, 2.0f);
      std::vector<float> ref(size_t(rows) * I);
      for (int r = 0; r < rows; r++)
        swiglu(gu.data() + size_t(r) * 2 * I, gu.data() + size_t(r) * 2 * I + I, I, ref.data() + size_t(r) * I);
      Dev dgu(gu, DType::F32), out = Dev::poisoned(ref.size(), at);
      cuda::swiglu_rows(dgu.p(), DType::F32, rows, I, out.p(), at, s);
      double e = rel_l2(out.host().data(), ref.data(), ref.size());
      c.expect(e < (at == DType::F32 ? 1e-6 : 5e-3), "swiglu -> %s rows=%d I=%d rel_l2=%.2e", dn(at), rows, I, e);
    }
}

// Both MoE paths of a bank owning experts [e0, e1] against the CPU math of segments/kinds/experts.cpp.
void test_moe(Checks& c, cuda::Context& ctx) {
  cudaStream_t s = ctx.stream();
  const cuda::KernelPath& kp = ctx.kernels();
  for (DType dt : {DType::F32, DType::BF16})
    for (auto [T, H, I, E, k, e0, e1] :
         {std::tuple{1, 64, 32, 16, 4, 0, 15}, {1, 256, 96, 32, 8, 8, 23}, {9, 64, 32, 16, 4, 4, 11}, {40, 256, 96, 32, 8, 0, 31}}) {
      const int n = e1 - e0 + 1;
      auto x = randn(size_t(T) * H, rng), wgu = randn(size_t(n) * 2 * I * H, rng, 0.1f),
           wd = randn(size_t(n) * H * I, rng, 0.1f);
      if (dt == DType::BF16) x = round_bf16(x), wgu = round_bf16(wgu), wd = round_bf16(wd);
      std::vector<int32_t> experts(size_t(T) * k);
      std::vector<float> weights(size_t(T) * k);
      for (int t = 0; t < T; t++) {
        std::vector<int32_t> ids(static_cast<size_t>(E));
        std::iota(ids.begin(), ids.end(), 0);
        std::shuffle(ids.begin(), ids.end(), rng);
        for (int j = 0; j < k; j++) {
          experts[size_t(t * k + j)] = ids[size_t(j)];
          weights[size_t(t * k + j)] = std::uniform_real_distribution<float>(0.05f, 1.f)(rng);
        }
      }
      // CPU reference slot by slot; NaN marks slots this bank does not own.
      std::vector<float> ref(size_t(T) * k * H, NAN);
      std::vector<float> g(static_cast<size_t>(I)), u(static_cast<size_t>(I)), d(static_cast<size_t>(H));
      for (int sl = 0; sl < T * k; sl++) {
        int e = experts[size_t(sl)];
        if (e < e0 || e > e1) continue;
        const float* base = wgu.data() + size_t(e - e0) * 2 * I * H;
        const float* xr = x.data() + size_t(sl / k) * H;
        linear(pool(), xr, 1, Mat{base, DType::F32, I, H}, g.data());
        linear(pool(), xr, 1, Mat{base + size_t(I) * H, DType::F32, I, H}, u.data());
        swiglu(g.data(), u.data(), I, g.data());
        if (dt == DType::BF16) g = round_bf16(g);
        linear(pool(), g.data(), 1, Mat{wd.data() + size_t(e - e0) * H * I, DType::F32, H, I}, d.data());
        for (int col = 0; col < H; col++) ref[size_t(sl) * H + col] = d[size_t(col)] * weights[size_t(sl)];
      }
      Dev dx(x, dt), dgu(wgu, dt), dwd(wd, dt), dw(weights, DType::F32);
      auto de = upload(experts);
      const double tol = dt == DType::F32 ? 1e-5 : 5e-3;
      for (int path = 0; path < 2; path++) {
        // The slots in the dtype a layer hands its banks (bf16 for a bf16 grouped request).
        Dev slots = Dev::poisoned(ref.size(), cuda::moe_slot_dtype(dt, path == 1));
        if (path == 0) {
          Dev act = Dev::poisoned(size_t(T) * k * I, dt);
          cuda::moe_gate_up_gemv(dx.p(), T * k, k, de.get(), e0, e1, dgu.p(), dt, I, H, act.p(), kp, s);
          // One token: the expert ids and the row staged in shared memory (S == k); the same token
          // twice (S == 2k) reads them per item: the first k slots' act must be the same bits.
          std::vector<float> x2(x);
          x2.insert(x2.end(), x.begin(), x.end());
          std::vector<int32_t> experts2(experts);
          experts2.insert(experts2.end(), experts.begin(), experts.end());
          Dev dx2(x2, dt), act2 = Dev::poisoned(size_t(2 * T) * k * I, dt);
          auto de2 = upload(experts2);
          cuda::moe_gate_up_gemv(dx2.p(), 2 * T * k, k, de2.get(), e0, e1, dgu.p(), dt, I, H, act2.p(), kp, s);
          const auto a1 = act.host(), a2 = act2.host();
          bool same_act = true;  // slots of other banks stay poisoned (NaN) in both
          for (size_t i = 0; i < a1.size(); i++)
            same_act &= std::memcmp(&a1[i], &a2[i], 4) == 0;
          c.expect(same_act, "moe_gate_up_gemv %s T=%d H=%d I=%d k=%d bank=[%d,%d]: act of %s and of the rows twice %s",
                   dn(dt), T, H, I, k, e0, e1, T == 1 ? "the staged token" : "the tokens",
                   same_act ? "bit-identical" : "DIFFER");
          cuda::moe_down_gemv(act.p(), T * k, de.get(), dw.f(), e0, e1, dwd.p(), dt, I, H, slots.f(), s);
        } else {
          // The grouped path through the Experts segment's own steps.
          std::vector<int32_t> perm;
          std::vector<int64_t> cnt(size_t(n), 0);
          for (int e = e0; e <= e1; e++)
            for (int sl = 0; sl < T * k; sl++)
              if (experts[size_t(sl)] == e) perm.push_back(sl), cnt[size_t(e - e0)]++;
          const int64_t m = int64_t(perm.size());
          auto dperm = upload(perm);
          Dev xg = Dev::poisoned(size_t(m) * H, dt), gu = Dev::poisoned(size_t(m) * 2 * I, dt),
              act = Dev::poisoned(size_t(m) * I, dt), dd = Dev::poisoned(size_t(m) * H, dt);
          cuda::moe_gather_rows(dx.p(), dt, dperm.get(), m, k, H, xg.p(), s);
          std::vector<cuda::GemmProblem> up, down;
          int64_t off = 0;
          const size_t es = dtype_size(dt);
          for (int i = 0; i < n; i++) {
            if (!cnt[size_t(i)]) continue;
            up.push_back({static_cast<char*>(xg.p()) + size_t(off) * H * es, static_cast<char*>(dgu.p()) + size_t(i) * 2 * I * H * es,
                          static_cast<char*>(gu.p()) + size_t(off) * 2 * I * es, cnt[size_t(i)]});
            down.push_back({static_cast<char*>(act.p()) + size_t(off) * I * es, static_cast<char*>(dwd.p()) + size_t(i) * H * I * es,
                            static_cast<char*>(dd.p()) + size_t(off) * H * es, cnt[size_t(i)]});
            off += cnt[size_t(i)];
          }
          cuda::Buffer<void*> ptrs(3 * size_t(n));
          cuda::gemm_xwT_many(ctx.cublas(), up, dt, 2 * I, H, ptrs.get(), true, s);
          cuda::swiglu_rows(gu.p(), dt, m, I, act.p(), dt, s);
          cuda::gemm_xwT_many(ctx.cublas(), down, dt, H, I, ptrs.get(), true, s);
          cuda::moe_scatter_weighted(dd.p(), dt, dperm.get(), dw.f(), m, H, slots.p(), cuda::moe_slot_dtype(dt, true), s);
        }
        auto got = slots.host();
        bool untouched = true;
        std::vector<float> a, b;
        for (size_t i = 0; i < ref.size(); i++) {
          if (std::isnan(ref[i])) {
            untouched &= std::isnan(got[i]);
          } else {
            a.push_back(got[i]);
            b.push_back(ref[i]);
          }
        }
        double e = rel_l2(a.data(), b.data(), a.size());
        if (dt == DType::BF16 && path == 1) e /= 2;  // products rounded to bf16 twice more (documented)
        c.expect(e < tol && untouched, "moe %s %s T=%d H=%d I=%d E=%d k=%d bank=[%d,%d] rel_l2=%.2e others %s", dn(dt),
                 path ? "grouped" : "gemv", T, H, I, E, k, e0, e1, e, untouched ? "untouched" : "WRITTEN");
      }
    }
}

// bf16 values made on the device from the synthetic formula (uniform in [-scale, scale]; fast at the
// full size), with their float copy on the host for the CPU reference.
struct Bf16Tensor {
  cuda::Buffer<char> dev;
  std::vector<float> host;
};
Bf16Tensor make_bf16(int64_t n, uint64_t name_hash, float scale, cudaStream_t s) {
  Bf16Tensor t;
  t.dev.grow(size_t(std::max<int64_t>(1, n)) * 2);
  cuda::synthetic_fill(7, name_hash, 0, n, scale, 0.f, DType::BF16, t.dev.get(), DType::BF16, s);
  SEGPIPE_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<uint16_t> h(static_cast<size_t>(n));
  SEGPIPE_CUDA_CHECK(cudaMemcpy(h.data(), t.dev.get(), h.size() * 2, cudaMemcpyDeviceToHost));
  t.host.resize(h.size());
  for (size_t i = 0; i < h.size(); i++) t.host[i] = bf16_to_f32(h[i]);
  return t;
}

// The CPU math of test_moe's reference (segments/kinds/experts.cpp, the SwiGLU rows rounded to bf16
// as the GPU stores them), batched per expert, for the slots marked in `want` whose expert is in
// [e0, e1]; every other slot is NaN.
std::vector<float> moe_reference(ThreadPool& tp, const Bf16Tensor& x, const Bf16Tensor& wgu, const Bf16Tensor& wd,
                                 const std::vector<int32_t>& experts, const std::vector<float>& weights, int k,
                                 int64_t H, int64_t I, int e0, int e1, const std::vector<char>& want) {
  const size_t S = experts.size();
  std::vector<float> ref(S * size_t(H), NAN);
  for (int e = e0; e <= e1; e++) {
    std::vector<size_t> sl;
    for (size_t s = 0; s < S; s++)
      if (experts[s] == e && want[s]) sl.push_back(s);
    if (sl.empty()) continue;
    const int64_t m = int64_t(sl.size());
    std::vector<float> xe(size_t(m * H)), g(size_t(m * I)), u(size_t(m * I)), a(size_t(m * I)), d(size_t(m * H));
    for (size_t i = 0; i < sl.size(); i++)
      std::copy_n(x.host.begin() + int64_t(sl[i] / size_t(k)) * H, H, xe.begin() + int64_t(i) * H);
    const float* base = wgu.host.data() + size_t(e - e0) * size_t(2 * I * H);
    linear(tp, xe.data(), m, Mat{base, DType::F32, I, H}, g.data());
    linear(tp, xe.data(), m, Mat{base + size_t(I * H), DType::F32, I, H}, u.data());
    swiglu(g.data(), u.data(), m * I, a.data());
    a = round_bf16(a);
    linear(tp, a.data(), m, Mat{wd.host.data() + size_t(e - e0) * size_t(H * I), DType::F32, H, I}, d.data());
    for (size_t i = 0; i < sl.size(); i++)
      for (int64_t c = 0; c < H; c++) ref[sl[i] * size_t(H) + size_t(c)] = d[i * size_t(H) + size_t(c)] * weights[sl[i]];
  }
  return ref;
}

// The cuBLAS grouped path of Experts::compute (host grouping), for the cross-check at full size.
void moe_cublas_slots(cuda::Context& ctx, const void* x, const void* wgu, const void* wd, const float* d_weights,
                      const std::vector<int32_t>& experts, int k, int64_t H, int64_t I, int e0, int e1, void* slots) {
  cudaStream_t s = ctx.stream();
  const int n = e1 - e0 + 1;
  std::vector<int32_t> perm;
  std::vector<int64_t> cnt(static_cast<size_t>(n), 0);
  for (int e = e0; e <= e1; e++)
    for (size_t sl = 0; sl < experts.size(); sl++)
      if (experts[sl] == e) perm.push_back(int32_t(sl)), cnt[size_t(e - e0)]++;
  const int64_t m = int64_t(perm.size());
  if (m == 0) return;
  auto dperm = upload(perm);
  cuda::Buffer<char> xg(size_t(m * H) * 2), gu(size_t(m * 2 * I) * 2), act(size_t(m * I) * 2), dd(size_t(m * H) * 2);
  cuda::moe_gather_rows(x, DType::BF16, dperm.get(), m, k, H, xg.get(), s);
  std::vector<cuda::GemmProblem> up, down;
  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    if (!cnt[size_t(i)]) continue;
    up.push_back({xg.get() + off * H * 2, static_cast<const char*>(wgu) + int64_t(i) * 2 * I * H * 2,
                  gu.get() + off * 2 * I * 2, cnt[size_t(i)]});
    down.push_back({act.get() + off * I * 2, static_cast<const char*>(wd) + int64_t(i) * H * I * 2,
                    dd.get() + off * H * 2, cnt[size_t(i)]});
    off += cnt[size_t(i)];
  }
  cuda::Buffer<void*> ptrs(3 * size_t(n));
  cuda::gemm_xwT_many(ctx.cublas(), up, DType::BF16, 2 * I, H, ptrs.get(), true, s);
  cuda::swiglu_rows(gu.get(), DType::BF16, m, I, act.get(), DType::BF16, s);
  cuda::gemm_xwT_many(ctx.cublas(), down, DType::BF16, H, I, ptrs.get(), true, s);
  cuda::moe_scatter_weighted(dd.get(), DType::BF16, dperm.get(), d_weights, m, H, slots, DType::BF16, s);
  SEGPIPE_CUDA_CHECK(cudaStreamSynchronize(s));
}

// The device-grouped bf16 path (moe_grouped.cuh): the grouping (exactly the host's stable grouping),
// the slots against the CPU reference, slots of other banks untouched, two launches bit-identical.
// Routing modes: 0 random distinct experts per token; 1 only even experts (the odd ones get no
// rows); 2 every token's first choice is one hot expert (several row tiles of one expert).
// Once per GEMM kernel (mma.sync, and wgmma where the context's path has it), on that kernel's path.
void test_moe_grouped_kernel(Checks& c, cuda::Context& ctx, const char* kname, const cuda::KernelPath& path) {
  cudaStream_t s = ctx.stream();
  ThreadPool tp(int(std::max(1u, std::thread::hardware_concurrency())));
  struct Case {
    int H, I, E, k, T, e0, e1, mode;
  };
  const Case cases[] = {
      {2048, 768, 128, 8, 2048, 0, 127, 0},  // full size (reference on every 4th token, cuBLAS on all)
      {64, 32, 8, 2, 37, 0, 7, 0},          {256, 128, 16, 4, 300, 0, 15, 0},
      {256, 128, 16, 4, 300, 5, 12, 0},     // a bank sub-range: the other slots stay poisoned
      {200, 72, 6, 2, 131, 0, 5, 0},        // K and N tails (not multiples of 64 / 128)
      {136, 200, 16, 2, 50, 0, 15, 1},      // experts with no rows, and tails
      {64, 32, 4, 1, 300, 0, 3, 2},         // every slot on one expert: tiles of 128, 128, 44 rows
      {128, 64, 8, 2, 260, 2, 6, 2},        // a hot expert inside a sub-range
      {64, 32, 16, 2, 3, 8, 15, 0},         // three tokens
  };
  int ci = 0;
  for (const Case& cs : cases) {
    ci++;
    const int H = cs.H, I = cs.I, E = cs.E, k = cs.k, T = cs.T, e0 = cs.e0, e1 = cs.e1, n = e1 - e0 + 1;
    const int64_t S = int64_t(T) * k;
    if (!cuda::moe_grouped_supported(T, k, H, I, n)) {
      c.expect(false, "moe_grouped_supported H=%d I=%d E=%d k=%d T=%d", H, I, E, k, T);
      continue;
    }
    auto x = make_bf16(int64_t(T) * H, 100 + ci, 1.0f, s);
    auto wgu = make_bf16(int64_t(n) * 2 * I * H, 200 + ci, 0.1f, s);
    auto wd = make_bf16(int64_t(n) * H * I, 300 + ci, 0.1f, s);
    std::vector<int32_t> experts(static_cast<size_t>(S));
    std::vector<float> weights(static_cast<size_t>(S));
    const int hot = e0 + (e1 > e0 ? 1 : 0);
    for (int t = 0; t < T; t++) {
      std::vector<int32_t> ids;
      for (int e = 0; e < E; e++)
        if ((cs.mode != 1 || e % 2 == 0) && (cs.mode != 2 || e != hot)) ids.push_back(e);
      std::shuffle(ids.begin(), ids.end(), rng);
      if (cs.mode == 2) ids.insert(ids.begin(), hot);
      for (int j = 0; j < k; j++) {
        experts[size_t(t * k + j)] = ids[size_t(j)];
        weights[size_t(t * k + j)] = std::uniform_real_distribution<float>(0.05f, 1.f)(rng);
      }
    }
    const bool full = T * k > 4096;
    std::vector<char> want(static_cast<size_t>(S), 1);
    if (full)
      for (int64_t sl = 0; sl < S; sl++) want[size_t(sl)] = (sl / k) % 4 == 0;
    auto ref = moe_reference(tp, x, wgu, wd, experts, weights, k, H, I, e0, e1, want);
    Dev dw(weights, DType::F32);
    auto de = upload(experts);
    cuda::Buffer<int32_t> ws(cuda::moe_grouped_workspace_ints(S, n));
    std::vector<float> got[2];
    for (int rep = 0; rep < 2; rep++) {
      Dev act = Dev::poisoned(size_t(S) * I, DType::BF16), slots = Dev::poisoned(size_t(S) * H, DType::BF16);
      cuda::moe_grouped_experts(x.dev.get(), T, k, de.get(), dw.f(), e0, e1, wgu.dev.get(), wd.dev.get(), I, H,
                                ws.get(), act.p(), slots.p(), path, s);
      got[rep] = slots.host();
    }
    // The bank cut in two (segmented runs): every slot bit-identical to the one bank's.
    bool split_same = true;
    if (e1 > e0) {
      const int mid = (e0 + e1) / 2;
      Dev act = Dev::poisoned(size_t(S) * I, DType::BF16), slots = Dev::poisoned(size_t(S) * H, DType::BF16);
      const size_t es = size_t(2 * I * H) * 2, ed = size_t(H * I) * 2;
      cuda::Buffer<int32_t> ws2(cuda::moe_grouped_workspace_ints(S, e1 - mid));
      cuda::moe_grouped_experts(x.dev.get(), T, k, de.get(), dw.f(), e0, mid, wgu.dev.get(), wd.dev.get(), I, H,
                                ws.get(), act.p(), slots.p(), path, s);
      cuda::moe_grouped_experts(x.dev.get(), T, k, de.get(), dw.f(), mid + 1, e1, wgu.dev.get() + size_t(mid + 1 - e0) * es,
                                wd.dev.get() + size_t(mid + 1 - e0) * ed, I, H, ws2.get(), act.p(), slots.p(), path,
                                s);
      auto sp = slots.host();
      split_same = std::memcmp(sp.data(), got[0].data(), sp.size() * 4) == 0;
    }
    // The grouping, against the host's stable grouping (run again: the split above reused ws).
    {
      Dev act = Dev::poisoned(size_t(S) * I, DType::BF16), slots = Dev::poisoned(size_t(S) * H, DType::BF16);
      cuda::moe_grouped_experts(x.dev.get(), T, k, de.get(), dw.f(), e0, e1, wgu.dev.get(), wd.dev.get(), I, H,
                                ws.get(), act.p(), slots.p(), path, s);
    }
    {
      const int tiles_max = int((S + cuda::kMoeGroupedTileRows - 1) / cuda::kMoeGroupedTileRows) + n;
      auto w = download(ws, cuda::moe_grouped_workspace_ints(S, n));
      const int32_t* off = w.data();
      const int32_t* tf = off + n + 1;
      const int32_t* te = tf + n + 1;
      const int32_t* perm = te + tiles_max;
      bool ok = true;
      int32_t o = 0, tl = 0;
      for (int b = 0; b < n && ok; b++) {
        ok &= off[b] == o && tf[b] == tl;
        int32_t cnt = 0;
        for (int64_t sl = 0; sl < S; sl++)
          if (experts[size_t(sl)] == e0 + b) ok &= perm[o + cnt++] == int32_t(sl);
        const int32_t tiles = cuda::moe_grouped_tile_count(cnt, cuda::moe_grouped_merged_tails(path));
        for (int32_t q = 0; q < tiles; q++) ok &= te[tl + q] == b;
        o += cnt;
        tl += tiles;
      }
      ok &= off[n] == o && tf[n] == tl;
      c.expect(ok, "moe_grouped_group H=%d E=%d k=%d T=%d bank=[%d,%d]: %d rows, %d tiles %s", H, E, k, T, e0, e1, o,
               tl, ok ? "equal to the host's stable grouping" : "DIFFER");
    }
    bool untouched = true;
    std::vector<float> a, b;
    for (size_t i = 0; i < ref.size(); i++) {
      const int e = experts[i / size_t(H)];
      if (e < e0 || e > e1) {
        untouched &= std::isnan(got[0][i]);
      } else if (!std::isnan(ref[i])) {
        a.push_back(got[0][i]);
        b.push_back(ref[i]);
      }
    }
    double err = rel_l2(a.data(), b.data(), a.size());
    const bool same = std::memcmp(got[0].data(), got[1].data(), got[0].size() * 4) == 0;
    c.expect(err < 5e-3 && untouched && same && split_same,
             "moe grouped on device [%s] H=%d I=%d E=%d k=%d T=%d bank=[%d,%d] mode %d: rel_l2=%.2e over %zu values, "
             "others %s, two launches %s, bank cut in two %s",
             kname, H, I, E, k, T, e0, e1, cs.mode, err, a.size(), untouched ? "untouched" : "WRITTEN",
             same ? "bit-identical" : "DIFFER", split_same ? "bit-identical" : "DIFFERS");
    if (full) {
      // Every slot (also the ones the CPU skipped) against the cuBLAS path, whose gate/up and down
      // products are rounded to bf16 (hence the wider tolerance, as test_moe's grouped check).
      Dev cub = Dev::poisoned(size_t(S) * H, DType::BF16);
      moe_cublas_slots(ctx, x.dev.get(), wgu.dev.get(), wd.dev.get(), dw.f(), experts, k, H, I, e0, e1, cub.p());
      auto cb = cub.host();
      double ec = rel_l2(got[0].data(), cb.data(), cb.size());
      c.expect(ec < 1e-2, "moe grouped on device [%s] vs cuBLAS grouped, all %lld slots: rel_l2=%.2e", kname,
               (long long)S, ec);
    }
  }
}

void test_moe_grouped(Checks& c, cuda::Context& ctx) {
  test_moe_grouped_kernel(c, ctx, "mma.sync", cuda::KernelPath{});
  if (ctx.kernels().wgmma)
    test_moe_grouped_kernel(c, ctx, "wgmma", ctx.kernels());
  else
    std::printf("  (wgmma grouped GEMMs: not on this device or path)\n");
}

void test_combine(Checks& c, cudaStream_t s) {
  for (DType sdt : {DType::F32, DType::BF16})
  for (auto [T, k, H] : {std::tuple{1, 8, 2048}, {6, 4, 64}, {300, 8, 2048}}) {
    auto slots = randn(size_t(T) * k * H, rng), x = randn(size_t(T) * H, rng);
    if (sdt == DType::BF16) slots = round_bf16(slots);  // the CPU sums the bf16 slots' values
    std::vector<int32_t> experts(size_t(T) * k);
    for (auto& e : experts) e = int32_t(rng() % 1000);
    for (int t = 0; t < T; t++)  // distinct per token
      for (int j = 0; j < k; j++) experts[size_t(t * k + j)] = experts[size_t(t * k + j)] * k + j;
    std::vector<float> mlp(x.size()), ref(x.size());
    combine_expert_outputs(slots.data(), experts.data(), T, k, H, mlp.data());
    for (size_t i = 0; i < x.size(); i++) ref[i] = x[i] + mlp[i];
    Dev ds(slots, sdt), dx(x, DType::F32);
    auto de = upload(experts);
    cuda::moe_combine_add(ds.p(), sdt, de.get(), T, k, H, dx.f(), s);
    auto got = dx.host();
    c.expect(std::memcmp(got.data(), ref.data(), ref.size() * 4) == 0, "moe_combine_add %s slots T=%d k=%d H=%d bit-identical",
             dn(sdt), T, k, H);
  }
}

void test_embed_convert(Checks& c, cudaStream_t s) {
  for (DType dt : {DType::F32, DType::BF16}) {
    const int V = 1000, H = 64, T = 9;
    auto table = round_bf16(randn(size_t(V) * H, rng));
    std::vector<int32_t> ids(T);
    for (auto& i : ids) i = int32_t(rng() % V);
    Dev dt_(table, dt), out = Dev::poisoned(size_t(T) * H, DType::F32);
    ids[3] = cuda::kNonFiniteToken;  // a greedy chain's marker: a row of NaN, nothing read out of bounds
    ids[5] = V;
    auto dids = upload(ids);
    cuda::embed_gather(dids.get(), T, dt_.p(), dt, V, H, out.f(), s);
    auto got = out.host();
    bool eq = true;
    for (int t = 0; t < T; t++) {
      if (t == 3 || t == 5) {
        for (int c2 = 0; c2 < H; c2++) eq &= std::isnan(got[size_t(t) * H + size_t(c2)]);
        continue;
      }
      eq &= std::memcmp(got.data() + size_t(t) * H, table.data() + size_t(ids[size_t(t)]) * H, H * 4) == 0;
    }
    c.expect(eq, "embed_gather %s bit-identical (ids out of range: NaN rows)", dn(dt));
  }
  auto v = round_bf16(randn(4096, rng));
  Dev src(v, DType::BF16), dst = Dev::poisoned(v.size(), DType::F32);
  cuda::convert(src.p(), DType::BF16, dst.p(), DType::F32, int64_t(v.size()), s);
  auto got = dst.host();
  c.expect(std::memcmp(got.data(), v.data(), v.size() * 4) == 0, "convert bf16 -> f32 exact");
}

// greedy_next_token against the host's sequential first-maximum scan (`v[i] > v[best]`): ties at
// several indices, rows shorter than the grid; and against the host's non-finite check: a NaN or an
// infinity anywhere gives kNonFiniteToken. Launched twice per row (the ticket must be back at 0, step
// and pos advance by one each time).
void test_greedy(Checks& c, cuda::Context& ctx) {
  cudaStream_t s = ctx.stream();
  const cuda::KernelPath& kp = ctx.kernels();
  const float inf = INFINITY, nan = NAN;
  struct Case {
    const char* name;
    int64_t n;
    std::vector<std::pair<int64_t, float>> plant;
  };
  const std::vector<Case> cases = {
      {"random vocabulary row", 151936, {}},
      {"equal maxima at 5000, 70000, 151000", 151936, {{151000, 9.f}, {5000, 9.f}, {70000, 9.f}}},
      {"maximum at the last index", 151936, {{151935, 9.f}}},
      {"7 elements (fewer than blocks)", 7, {{4, 9.f}, {6, 9.f}}},
      {"NaN beside the maximum", 1000, {{3, nan}, {500, 9.f}, {501, nan}}},
      {"NaN at index 0", 1000, {{0, nan}, {500, 9.f}}},
      {"+inf at 10 and 20", 1000, {{20, inf}, {10, inf}}},
      {"+inf at 0", 1000, {{0, inf}, {999, inf}}},
      {"all -inf", 300, {}},
      {"all -inf with NaN at 5", 300, {{5, nan}}},
      {"-inf in the last block only", 151936, {{151930, -inf}}},
      {"NaN in the first block only", 151936, {{17, nan}}},
  };
  for (const Case& k : cases) {
    std::vector<float> v = std::string(k.name).rfind("all -inf", 0) == 0 ? std::vector<float>(size_t(k.n), -inf)
                                                                         : randn(size_t(k.n), rng);
    for (auto [i, x] : k.plant) v[size_t(i)] = x;
    int32_t want = 0;
    for (int64_t i = 1; i < k.n; i++)
      if (v[size_t(i)] > v[size_t(want)]) want = int32_t(i);
    if (first_non_finite(v.data(), k.n) >= 0) want = cuda::kNonFiniteToken;
    auto dv = upload(v);
    auto ids = upload(std::vector<int32_t>{-1}), pos = upload(std::vector<int32_t>{41});
    auto tokens = upload(std::vector<int32_t>{-1, -1, -1, -1}), step = upload(std::vector<int32_t>{2});
    cuda::Buffer<float> pv(size_t(cuda::greedy_blocks()));
    cuda::Buffer<int32_t> pi(size_t(cuda::greedy_blocks()));
    auto ticket = upload(std::vector<unsigned>{0});
    cuda::GreedyState g;
    g.ids = ids.get(), g.pos = pos.get(), g.tokens = tokens.get(), g.step = step.get();
    g.part_val = pv.get(), g.part_idx = pi.get(), g.ticket = ticket.get();
    cuda::greedy_next_token(dv.get(), k.n, g, kp, s);
    cuda::greedy_next_token(dv.get(), k.n, g, kp, s);
    SEGPIPE_CUDA_CHECK(cudaStreamSynchronize(s));
    const auto got_ids = download(ids, 1), got_pos = download(pos, 1), got_tok = download(tokens, 4),
               got_step = download(step, 1);
    const auto got_ticket = download(ticket, 1);
    const bool ok = got_ids[0] == want && got_tok[2] == want && got_tok[3] == want && got_tok[0] == -1 &&
                    got_tok[1] == -1 && got_step[0] == 4 && got_pos[0] == 43 && got_ticket[0] == 0;
    c.expect(ok, "greedy_next_token, %s (n=%lld): token %d (host %d), step %d, pos %d, ticket %u", k.name,
             static_cast<long long>(k.n), got_ids[0], want, got_step[0], got_pos[0], got_ticket[0]);
  }
}

void test_synthetic(Checks& c, cudaStream_t s) {
  const uint64_t h = synthetic_name_hash("thinker.model.layers.47.mlp.experts.127.down_proj.weight");
  for (DType ck : {DType::BF16, DType::F32, DType::F16})
    for (uint64_t first : {uint64_t(0), uint64_t(1572864 - 4096), uint64_t(1) << 33}) {
      const int64_t n = 4096;
      const float scale = std::sqrt(3.0f / 768.0f);
      Dev out = Dev::poisoned(size_t(n), DType::F32);
      cuda::synthetic_fill(42, h, first, n, scale, 0.f, ck, out.p(), DType::F32, s);
      auto got = out.host();
      size_t bad = 0;
      for (int64_t i = 0; i < n; i++) {
        float v = synthetic_value(42, h, first + uint64_t(i), scale, 0.f);
        if (ck == DType::BF16) v = bf16_to_f32(f32_to_bf16(v));
        if (ck == DType::F16) v = f16_to_f32(f32_to_f16(v));
        uint32_t a, b;
        std::memcpy(&a, &v, 4);
        std::memcpy(&b, &got[size_t(i)], 4);
        bad += a != b;
      }
      c.expect(bad == 0, "synthetic_fill (%s) first=%llu: %zu of %lld elements differ from synthetic_value",
               dtype_name(ck), (unsigned long long)first, bad, (long long)n);
    }
}

}  // namespace

// The decode kernels (gemv.cuh, router_fused, moe_down_combine) against the CPU reference and
// against the library path they replace.
void test_decode_kernels(Checks& c, cuda::Context& ctx) {
  cudaStream_t s = ctx.stream();
  const cuda::KernelPath& kp = ctx.kernels();
  for (DType dt : {DType::F32, DType::BF16})
    for (auto [rows, cols] : {std::pair{48, 64}, {5120, 2048}, {2048, 4096}, {1000, 776}, {3, 13000}}) {
      auto x = randn(size_t(cols), rng, 2.0f), w = randn(size_t(rows) * cols, rng, 0.05f), nw = randn(size_t(cols), rng);
      if (dt == DType::BF16) w = round_bf16(w);
      // plain: x in the weights' dtype, accumulate onto 1
      auto xr = dt == DType::BF16 ? round_bf16(x) : x;
      std::vector<float> ref(static_cast<size_t>(rows));
      linear(pool(), xr.data(), 1, Mat{w.data(), DType::F32, rows, cols}, ref.data());
      Dev dx(xr, dt), dw(w, dt), y(std::vector<float>(size_t(rows), 1.0f), DType::F32);
      cuda::gemv(dx.p(), dt, dw.p(), dt, rows, cols, y.f(), true, kp, s);
      std::vector<float> ref1 = ref;
      for (auto& v : ref1) v += 1.0f;
      double e = rel_l2(y.host().data(), ref1.data(), ref1.size());
      c.expect(e < 1e-5, "gemv %s rows=%d cols=%d (+= y) rel_l2=%.2e", dn(dt), rows, cols, e);
      if (cols > 12288) continue;
      // fused RMSNorm: equal to rmsnorm() then the product; h_out equal to rmsnorm() bit for bit
      Dev dxf(x, DType::F32), dnw(nw, DType::F32), h_lib = Dev::poisoned(size_t(cols), dt),
          h_out = Dev::poisoned(size_t(cols), dt), yf = Dev::poisoned(size_t(rows), DType::F32);
      cuda::rmsnorm(dxf.f(), 1, cols, dnw.f(), 1e-6f, h_lib.p(), dt, s);
      cuda::gemv_rmsnorm(dxf.f(), dnw.f(), 1e-6f, dw.p(), dt, rows, cols, yf.f(), false, h_out.p(), kp, s);
      auto hl = h_lib.host(), ho = h_out.host();
      std::vector<float> refn(static_cast<size_t>(rows));
      linear(pool(), hl.data(), 1, Mat{w.data(), DType::F32, rows, cols}, refn.data());
      e = rel_l2(yf.host().data(), refn.data(), refn.size());
      bool same_h = std::memcmp(hl.data(), ho.data(), hl.size() * 4) == 0;
      c.expect(e < 1e-5 && same_h, "gemv_rmsnorm %s rows=%d cols=%d rel_l2=%.2e normed row %s", dn(dt), rows, cols, e,
               same_h ? "bit-identical to rmsnorm" : "DIFFERS");
    }
  // router_fused vs rmsnorm + product + route_topk
  for (DType dt : {DType::F32, DType::BF16})
    for (auto [E, H, k, renorm] : {std::tuple{128, 2048, 8, true}, {8, 64, 2, true}, {60, 256, 4, false}}) {
      auto x = randn(size_t(H), rng, 2.0f), nw = randn(size_t(H), rng), w = randn(size_t(E) * H, rng, 0.05f);
      if (dt == DType::BF16) w = round_bf16(w);
      Dev dx(x, DType::F32), dnw(nw, DType::F32), dw(w, dt), h = Dev::poisoned(size_t(H), dt),
          lg = Dev::poisoned(size_t(E), DType::F32), wt = Dev::poisoned(size_t(k), DType::F32);
      cuda::Buffer<int32_t> de(static_cast<size_t>(k));
      cuda::Buffer<unsigned> counter(1);
      SEGPIPE_CUDA_CHECK(cudaMemset(counter.get(), 0, 4));
      SEGPIPE_CUDA_CHECK(cudaDeviceSynchronize());
      for (int rep = 0; rep < 3; rep++)  // the counter must be ready again after each launch
        cuda::router_fused(dx.f(), dnw.f(), 1e-6f, dw.p(), dt, E, H, lg.f(), h.p(), k, renorm, de.get(), wt.f(),
                           counter.get(), kp, s);
      auto hh = h.host();
      std::vector<float> lref(static_cast<size_t>(E));
      linear(pool(), hh.data(), 1, Mat{w.data(), DType::F32, E, H}, lref.data());
      auto lgot = lg.host();
      double e = rel_l2(lgot.data(), lref.data(), lref.size());
      // routing of the GPU's own logits must match route_topk exactly
      std::vector<int32_t> e_ref(static_cast<size_t>(k));
      std::vector<float> w_ref(static_cast<size_t>(k));
      route_topk(lgot.data(), 1, E, k, renorm, e_ref.data(), w_ref.data());
      auto e_got = download(de, size_t(k));
      double ew = rel_l2(wt.host().data(), w_ref.data(), w_ref.size());
      auto cnt = download(counter, 1);
      c.expect(e < 1e-5 && e_got == e_ref && ew < 1e-6 && cnt[0] == 0,
               "router_fused %s E=%d H=%d k=%d logits rel_l2=%.2e experts %s weights rel_l2=%.2e counter %u", dn(dt), E,
               H, k, e, e_got == e_ref ? "equal" : "DIFFER", ew, cnt[0]);
    }
  // moe_down_combine vs moe_down_gemv + moe_combine_add, bit for bit
  for (DType dt : {DType::F32, DType::BF16})
    for (auto [H, I, E, k] : {std::tuple{2048, 768, 16, 8}, {64, 32, 16, 4}, {256, 96, 32, 1}, {200, 776, 16, 8},
                              {1000, 1536, 8, 8}, {4096, 64, 8, 3}}) {
      auto act = randn(size_t(k) * I, rng), wd = randn(size_t(E) * H * I, rng, 0.05f), x = randn(size_t(H), rng);
      if (dt == DType::BF16) act = round_bf16(act), wd = round_bf16(wd);
      std::vector<int32_t> ids(static_cast<size_t>(E));
      std::iota(ids.begin(), ids.end(), 0);
      std::shuffle(ids.begin(), ids.end(), rng);
      std::vector<int32_t> experts(ids.begin(), ids.begin() + k);
      std::vector<float> weights(static_cast<size_t>(k));
      for (auto& v : weights) v = std::uniform_real_distribution<float>(0.05f, 1.f)(rng);
      Dev da(act, dt), dwd(wd, dt), dw(weights, DType::F32), x1(x, DType::F32), x2(x, DType::F32),
          slots = Dev::poisoned(size_t(k) * H, DType::F32);
      auto de = upload(experts);
      cuda::moe_down_gemv(da.p(), k, de.get(), dw.f(), 0, E - 1, dwd.p(), dt, I, H, slots.f(), s);
      cuda::moe_combine_add(slots.p(), DType::F32, de.get(), 1, k, H, x1.f(), s);
      cuda::moe_down_combine(da.p(), k, de.get(), dw.f(), dwd.p(), dt, I, H, x2.f(), kp, s);
      auto a = x1.host(), b = x2.host();
      c.expect(std::memcmp(a.data(), b.data(), a.size() * 4) == 0, "moe_down_combine %s H=%d I=%d k=%d %s", dn(dt), H,
               I, k, std::memcmp(a.data(), b.data(), a.size() * 4) == 0 ? "bit-identical to down + combine" : "DIFFERS");
    }
}


// The decode attention's split count chosen from the position (256 keys a split, at most 8):
// positions around the split boundaries giving every split count from 1 to 8, against the CPU
// reference, launched twice (bit-identical: deterministic for a given position).
void test_attention_splits(Checks& c, cuda::Context& ctx) {
  cudaStream_t s = ctx.stream();
  const cuda::KernelPath& kp = ctx.kernels();
  constexpr int keys = 256;  // attention.cu kSplitKeys
  for (DType ot : {DType::F32, DType::BF16})
    for (auto [nh, nkv, hd, pos0] :
         {std::tuple{32, 4, 128, 0}, {32, 4, 128, 63}, {32, 4, 128, 64}, {32, 4, 128, 130}, {32, 4, 128, 255},
          {32, 4, 128, 256}, {32, 4, 128, 300}, {32, 4, 128, 600}, {32, 4, 128, 800}, {32, 4, 128, 1100},
          {32, 4, 128, 1400}, {32, 4, 128, 1700}, {32, 4, 128, 2000}, {32, 4, 128, 3000}, {4, 2, 16, 500},
          {8, 8, 64, 1333}, {2, 1, 256, 700}}) {
      const int qd = nh * hd, kvd = nkv * hd, n = pos0 + 1;
      const int splits = std::min(8, (n + keys - 1) / keys);
      auto q = randn(size_t(qd), rng), kc = randn(size_t(n) * kvd, rng), vc = randn(size_t(n) * kvd, rng);
      std::vector<float> ref(q.size());
      attention(pool(), {nh, nkv, hd}, q.data(), 1, pos0, kc.data(), vc.data(), ref.data());
      Dev dq(q, DType::F32), dk(kc, DType::F32), dv(vc, DType::F32);
      auto dpos = upload(std::vector<int32_t>{pos0});
      cuda::AttnShape as{nh, nkv, hd};
      cuda::Buffer<float> part(cuda::attention_decode_scratch_floats(as));
      cuda::Buffer<unsigned> cnt(static_cast<size_t>(nh));
      SEGPIPE_CUDA_CHECK(cudaMemset(cnt.get(), 0, cnt.bytes()));
      const float scale = static_cast<float>(std::pow(double(hd), -0.5));
      std::vector<float> first;
      bool same = true;
      double e = 0;
      for (int rep = 0; rep < 2; rep++) {
        Dev out = Dev::poisoned(q.size(), ot);
        cuda::attention_decode(dq.f(), dpos.get(), as, dk.f(), dv.f(), scale, out.p(), ot, part.get(), cnt.get(), kp,
                               s);
        auto h = out.host();
        if (rep == 0) first = h;
        else same = std::memcmp(first.data(), h.data(), h.size() * 4) == 0;
        e = std::max(e, rel_l2(h.data(), ref.data(), ref.size()));
      }
      auto cz = download(cnt, size_t(nh));
      const bool zero = std::all_of(cz.begin(), cz.end(), [](unsigned v) { return v == 0; });
      const double tol = ot == DType::F32 ? 1e-5 : 5e-3;
      c.expect(e < tol && same && zero,
               "attention_decode split_keys=%d (%d split%s) -> %s heads=%d/%d hd=%d pos0=%d rel_l2=%.2e %s counters %s",
               keys, splits, splits > 1 ? "s" : "", dn(ot), nh, nkv, hd, pos0, e,
               same ? "two launches bit-identical" : "two launches DIFFER", zero ? "0" : "NOT 0");
    }
}

// The chosen experts' MLP on one token's row h, on the CPU: per slot j, weights[j] * down(silu(gate(h))
// * up(h)) with the SwiGLU output rounded to bf16 where dt is (as the GPU's act), added up as the
// reference combines the slots (combine_expert_outputs).
std::vector<float> cpu_expert_mlp(const std::vector<float>& h, const std::vector<float>& wgu,
                                  const std::vector<float>& wd, const std::vector<int32_t>& experts,
                                  const std::vector<float>& weights, int H, int I, DType dt) {
  const int k = int(experts.size());
  std::vector<float> slots(size_t(k) * H), mlp(static_cast<size_t>(H)), g(static_cast<size_t>(I)),
      u(static_cast<size_t>(I));
  for (int j = 0; j < k; j++) {
    const float* base = wgu.data() + size_t(experts[size_t(j)]) * 2 * I * H;
    linear(pool(), h.data(), 1, Mat{base, DType::F32, I, H}, g.data());
    linear(pool(), h.data(), 1, Mat{base + size_t(I) * H, DType::F32, I, H}, u.data());
    swiglu(g.data(), u.data(), I, g.data());
    if (dt == DType::BF16) g = round_bf16(g);
    linear(pool(), g.data(), 1, Mat{wd.data() + size_t(experts[size_t(j)]) * H * I, DType::F32, H, I},
           slots.data() + size_t(j) * H);
    for (int col = 0; col < H; col++) slots[size_t(j) * H + col] *= weights[size_t(j)];
  }
  combine_expert_outputs(slots.data(), experts.data(), 1, k, H, mlp.data());
  return mlp;
}

// The decode MLP block of one token through router_fused + moe_gate_up_gemv + moe_down_combine on
// the GPU (x: the residual row), and on the CPU the routing of the GPU's logits and the chosen
// experts' MLP on the GPU's normalized row.
struct MoeDecodeRef {
  std::vector<float> logits, weights, act, x, h, mlp;
  std::vector<int32_t> experts, experts_cpu;
};
MoeDecodeRef moe_decode_three_kernels(const std::vector<float>& x, const Dev& dnw, const Dev& dwr, const Dev& dgu,
                                      const Dev& dwd, const std::vector<float>& wgu, const std::vector<float>& wd,
                                      DType dt, int E, int H, int I, int k, bool renorm, const cuda::KernelPath& kp,
                                      cudaStream_t s) {
  Dev xa(x, DType::F32), ha = Dev::poisoned(size_t(H), dt), la = Dev::poisoned(size_t(E), DType::F32),
      wa = Dev::poisoned(size_t(k), DType::F32), acta = Dev::poisoned(size_t(k) * I, dt);
  cuda::Buffer<int32_t> ea(static_cast<size_t>(k));
  cuda::Buffer<unsigned> counter(1);
  SEGPIPE_CUDA_CHECK(cudaMemset(counter.get(), 0, 4));
  SEGPIPE_CUDA_CHECK(cudaDeviceSynchronize());
  cuda::router_fused(xa.f(), dnw.f(), 1e-6f, dwr.p(), dt, E, H, la.f(), ha.p(), k, renorm, ea.get(), wa.f(),
                     counter.get(), kp, s);
  cuda::moe_gate_up_gemv(ha.p(), k, k, ea.get(), 0, E - 1, dgu.p(), dt, I, H, acta.p(), kp, s);
  cuda::moe_down_combine(acta.p(), k, ea.get(), wa.f(), dwd.p(), dt, I, H, xa.f(), kp, s);
  MoeDecodeRef r;
  r.logits = la.host(), r.weights = wa.host(), r.act = acta.host(), r.x = xa.host(), r.h = ha.host();
  r.experts = download(ea, size_t(k));
  r.experts_cpu.resize(static_cast<size_t>(k));
  std::vector<float> w_ref(static_cast<size_t>(k));
  route_topk(r.logits.data(), 1, E, k, renorm, r.experts_cpu.data(), w_ref.data());
  r.mlp = cpu_expert_mlp(r.h, wgu, wd, r.experts_cpu, w_ref, H, I, dt);
  return r;
}

// The decode MLP block of one token (router_fused + moe_gate_up_gemv + moe_down_combine, the kernels
// the fused decode step runs) against the CPU (route_topk on the GPU's logits; the chosen experts' MLP
// added to x), launched twice: bit-identical (logits, h, experts, weights, act and x).
void test_moe_decode(Checks& c, cuda::Context& ctx) {
  cudaStream_t s = ctx.stream();
  const cuda::KernelPath& kp = ctx.kernels();
  for (DType dt : {DType::F32, DType::BF16})
    for (auto [E, H, I, k, renorm] : {std::tuple{128, 1024, 256, 8, true}, {128, 256, 96, 8, true},
                                      {8, 64, 40, 2, true}, {60, 136, 24, 4, false}, {200, 128, 56, 8, true},
                                      {16, 2048, 768, 1, true}}) {
      auto x = randn(size_t(H), rng, 2.0f), nw = randn(size_t(H), rng), wr = randn(size_t(E) * H, rng, 0.05f);
      auto wgu = randn(size_t(E) * 2 * I * H, rng, 0.05f), wd = randn(size_t(E) * H * I, rng, 0.05f);
      if (dt == DType::BF16) wr = round_bf16(wr), wgu = round_bf16(wgu), wd = round_bf16(wd);
      Dev dnw(nw, DType::F32), dwr(wr, dt), dgu(wgu, dt), dwd(wd, dt);
      const MoeDecodeRef ref = moe_decode_three_kernels(x, dnw, dwr, dgu, dwd, wgu, wd, dt, E, H, I, k, renorm, kp, s);
      std::vector<float> dA(static_cast<size_t>(H));
      for (int i = 0; i < H; i++) dA[size_t(i)] = ref.x[size_t(i)] - x[size_t(i)];
      const double eref = rel_l2(dA.data(), ref.mlp.data(), ref.mlp.size());
      const double tol = dt == DType::F32 ? 1e-4 : 2e-2;  // of the MLP output, through x's rounding
      const MoeDecodeRef again = moe_decode_three_kernels(x, dnw, dwr, dgu, dwd, wgu, wd, dt, E, H, I, k, renorm, kp, s);
      auto bits = [](const std::vector<float>& a, const std::vector<float>& b) {
        return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
      };
      const bool same = bits(ref.logits, again.logits) && bits(ref.h, again.h) && ref.experts == again.experts &&
                        bits(ref.weights, again.weights) && bits(ref.act, again.act) && bits(ref.x, again.x);
      c.expect(ref.experts == ref.experts_cpu && eref < tol && same,
               "decode MLP block %s E=%d H=%d I=%d k=%d renorm=%d: experts %s mlp rel_l2=%.2e; second launch %s",
               dn(dt), E, H, I, k, int(renorm), ref.experts == ref.experts_cpu ? "= route_topk" : "DIFFER", eref,
               same ? "bit-identical" : "DIFFERS");
    }
}

// The decode GEMV on a persistent grid (warps walk several rows, double-buffered) against the CPU
// product; x in the weights' dtype and in float32 (o_proj's attention input), with and without the
// RMSNorm prologue; rows longer than one register buffer (4096, 4104, 13000 columns), fewer rows than
// warps. Each row's result does not depend on which warp, block or round computes it: the product
// over slices of the rows (other grids, other row-to-warp assignments; 1 to ~10 rows a warp over the
// shapes) is bit-identical to the whole product's rows, and so is a second launch.
void test_gemv_persistent(Checks& c, cuda::Context& ctx) {
  cudaStream_t s = ctx.stream();
  const cuda::KernelPath& kp = ctx.kernels();
  for (DType dt : {DType::F32, DType::BF16})
    for (auto [rows, cols] : {std::pair{5120, 2048}, {2048, 4096}, {2048, 4104}, {100, 4096}, {3000, 3000},
                              {20011, 2048}, {1000, 776}, {9, 64}, {7, 13000}}) {
      auto x = randn(size_t(cols), rng, 2.0f), w = randn(size_t(rows) * cols, rng, 0.05f), nw = randn(size_t(cols), rng);
      if (dt == DType::BF16) w = round_bf16(w);
      auto xr = dt == DType::BF16 ? round_bf16(x) : x;
      std::vector<float> ref(static_cast<size_t>(rows)), ref_f(static_cast<size_t>(rows));
      linear(pool(), xr.data(), 1, Mat{w.data(), DType::F32, rows, cols}, ref.data());
      linear(pool(), x.data(), 1, Mat{w.data(), DType::F32, rows, cols}, ref_f.data());
      Dev dx(xr, dt), dxf(x, DType::F32), dnw(nw, DType::F32), dw(w, dt);
      const size_t es = dtype_size(dt);
      // The whole product (twice), then slices [r0, r0 + n) of the rows: x in dt, x float32, RMSNorm.
      auto run = [&](int kind, int64_t r0, int64_t n) {
        const void* wp = static_cast<const char*>(dw.p()) + size_t(r0) * size_t(cols) * es;
        Dev yy = Dev::poisoned(size_t(n), DType::F32);
        if (kind == 0)
          cuda::gemv(dx.p(), dt, wp, dt, n, cols, yy.f(), false, kp, s);
        else if (kind == 1)
          cuda::gemv(dxf.p(), DType::F32, wp, dt, n, cols, yy.f(), false, kp, s);
        else
          cuda::gemv_rmsnorm(dxf.f(), dnw.f(), 1e-6f, wp, dt, n, cols, yy.f(), false, nullptr, kp, s);
        return yy.host();
      };
      const bool norm = cols <= 12288;
      std::vector<float> y = run(0, 0, rows), y2 = run(0, 0, rows), yf = run(1, 0, rows),
                         yn = norm ? run(2, 0, rows) : std::vector<float>{};
      bool same = std::memcmp(y.data(), y2.data(), y.size() * 4) == 0, same_f = true, same_n = true;
      const int64_t n1 = std::max<int64_t>(1, rows / 3);
      for (auto [r0, n] : {std::pair<int64_t, int64_t>{0, std::min<int64_t>(rows, 9)}, {rows - n1, n1},
                           {rows / 2, std::max<int64_t>(1, (rows - rows / 2) / 2)}}) {
        auto sub = [&](const std::vector<float>& whole, const std::vector<float>& part) {
          return std::memcmp(whole.data() + r0, part.data(), size_t(n) * 4) == 0;
        };
        same &= sub(y, run(0, r0, n));
        same_f &= sub(yf, run(1, r0, n));
        if (norm) same_n &= sub(yn, run(2, r0, n));
      }
      const double e = rel_l2(y.data(), ref.data(), ref.size());
      const double ef = rel_l2(yf.data(), ref_f.data(), ref_f.size());
      c.expect(e < 1e-5 && ef < 1e-5 && same && same_f && same_n,
               "gemv %s rows=%d cols=%d rel_l2=%.2e (x float32 %.2e); row slices and a second launch: gemv %s, "
               "x float32 %s, gemv_rmsnorm %s",
               dn(dt), rows, cols, e, ef, same ? "bit-identical" : "DIFFERS", same_f ? "bit-identical" : "DIFFERS",
               same_n ? "bit-identical" : "DIFFERS");
    }
}

// The combine with a layer's shared expert (Qwen2-MoE): x + ((0 + the routed slots in ascending expert
// id) + sigmoid(gate) * shared), against the CPU layer's arithmetic (combine_expert_outputs, then
// mlp += g * sh, then the residual add). Only the sigmoid's exp may differ from the host's (a few ulp
// of g), hence a relative norm rather than bit equality.
void test_combine_shared(Checks& c, cudaStream_t s) {
  for (DType sdt : {DType::F32, DType::BF16})
    for (auto [T, k, H] : {std::tuple{1, 4, 64}, {6, 3, 96}, {300, 8, 2048}, {9, 4, 2048}}) {
      auto slots = randn(size_t(T) * k * H, rng), x = randn(size_t(T) * H, rng), sh = randn(size_t(T) * H, rng);
      auto gate = randn(size_t(T), rng, 3.0f);
      if (sdt == DType::BF16) slots = round_bf16(slots);
      std::vector<int32_t> experts(size_t(T) * k);
      for (auto& e : experts) e = int32_t(rng() % 1000);
      for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) experts[size_t(t * k + j)] = experts[size_t(t * k + j)] * k + j;
      std::vector<float> mlp(x.size()), ref(x.size());
      combine_expert_outputs(slots.data(), experts.data(), T, k, H, mlp.data());
      for (int t = 0; t < T; t++) {
        const float g = 1.0f / (1.0f + std::exp(-gate[size_t(t)]));
        for (int i = 0; i < H; i++) mlp[size_t(t) * H + i] += g * sh[size_t(t) * H + i];
      }
      for (size_t i = 0; i < x.size(); i++) ref[i] = x[i] + mlp[i];
      Dev ds(slots, sdt), dx(x, DType::F32), dsh(sh, DType::F32), dg(gate, DType::F32);
      auto de = upload(experts);
      cuda::moe_combine_add(ds.p(), sdt, de.get(), T, k, H, dx.f(), s, {dsh.f(), dg.f()});
      auto got = dx.host();
      const double e = rel_l2(got.data(), ref.data(), ref.size());
      c.expect(e < 1e-6, "moe_combine_add + shared expert, %s slots T=%d k=%d H=%d rel_l2=%.2e", dn(sdt), T, k, H, e);
    }
}

int main(int argc, char** argv) {
  const GpuKernels kernels = take_gpu_kernels_arg(argc, argv);
  if (const int rc = gpu_start("test_cuda_kernels"); rc >= 0) return rc;
  try {
    cuda::Context ctx(0, kernels);
    const cuda::KernelPath& kp = ctx.kernels();
    std::printf("device: %s; kernels %s: wgmma %d, pdl %d, l2_prefetch %d\n", cuda::device_name(0).c_str(),
                to_string(kernels), int(kp.wgmma), int(kp.pdl), int(kp.l2_prefetch));
    // `test_cuda_kernels flash`: the flash prefill attention checks alone (kernel work on it).
    if (argc > 1 && std::string(argv[1]) == "flash") {
      Checks c;
      test_attention_flash(c, ctx);
      return c.finish("test_cuda_kernels flash");
    }
    Checks c;
    test_gemm(c, ctx);
    test_rmsnorm(c, ctx.stream());
    test_qk_norm_rope(c, ctx.stream());
    test_qk_norm_rope_kernels(c, ctx.stream());
    test_attention(c, ctx);
    test_qk_step_variants(c, ctx);
    test_attention_gemm(c, ctx);
    test_attention_flash(c, ctx);
    test_router(c, ctx.stream());
    test_swiglu(c, ctx.stream());
    test_moe(c, ctx);
    test_moe_grouped(c, ctx);
    test_combine(c, ctx.stream());
    test_combine_shared(c, ctx.stream());
    test_decode_kernels(c, ctx);
    test_attention_splits(c, ctx);
    test_moe_decode(c, ctx);
    test_gemv_persistent(c, ctx);
    test_embed_convert(c, ctx.stream());
    test_greedy(c, ctx);
    test_synthetic(c, ctx.stream());
    return c.finish("test_cuda_kernels");
  } catch (const std::exception& e) {
    std::printf("test_cuda_kernels: error: %s\n", e.what());
    return 1;
  }
}
