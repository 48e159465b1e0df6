// segpipe_bench_cuda: the GPU engine on a synthetic preset made in GPU memory (no files), batch 1:
//   decode tokens/s and ms/token against the memory floor (bytes a token must read / measured
//   device-to-device copy bandwidth), with and without the CUDA graph;
//   prefill of a long prompt in TFLOP/s against the measured bf16 cuBLAS GEMM rate.
// usage: segpipe_bench_cuda [--preset NAME] [--layers N] [--dtype bfloat16|float32] [--prompt T]
//                           [--decode N] [--json FILE] [--variants] [--only-decode]
//   --variants: the decode benchmark (CUDA graph, then a greedy chain on the device and an eager phase
//   profile) twice in this process (the defaults, then again: the run-to-run spread); the decode
//   kernels' earlier variants were removed on 2026-12-07 (third session), their figures are in
//   docs/benchmarks-cuda.md. --only-decode skips prefill and the GEMM/GEMV figures.
//   --read-ceiling: how fast one MoE layer's chosen experts' bytes are read alone (read_ceiling.h).
//   --l2-probe: whether q/k/v weights asked into L2 survive the expert stream (l2_probe.h).
//   --experts N: the preset with N routed experts.
//   --attention-only: only the flash attention kernel alone at T = --prompt (the path's kernel, the
//   portable one beside it where they differ, and the K/V conversions).
//   --prefill-only: the flash prefill alone (median of 9) and its phase profile (before/after A/Bs).
//   --gpu-kernels auto|portable: the kernels' hardware path (segments/kernels/cuda/device_caps.h) of
//   every context and runner the benchmark builds; portable measures the path an Ampere or Ada GPU
//   takes, on this card. The path that ran is printed (and written to the JSON).
#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "orchestrator/drivers/cuda_runner.h"
#include "orchestrator/drivers/generation.h"
#include "orchestrator/planning/run_plan.h"
#include "segments/cuda/device.h"
#include "segments/cuda/profile.h"
#include "segments/cuda/kinds.h"
#include "segments/kernels/cuda/attention.cuh"
#include "segments/kernels/cuda/convert.cuh"
#include "segments/kernels/cuda/gemm.cuh"
#include "segments/kernels/cuda/gemv.cuh"
#include "segments/kernels/cuda/moe.cuh"
#include "segments/kernels/cuda/moe_grouped.cuh"
#include "segments/kernels/cuda/router.cuh"
#include "segments/kernels/cuda/swiglu.cuh"
#include "segments/kernels/cuda/synthetic.cuh"
#include "segments/model/synthetic.h"
#include "tools/cuda/l2_probe.h"
#include "tools/cuda/read_ceiling.h"
#include "tools/cuda/bench_preflight.h"
#include "tools/flag_value.h"

using namespace segpipe;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The phase profile of 8 eager one-token steps at positions pos .. pos + 7: ms per token per phase.
std::map<std::string, double> eager_decode_phases(CudaRunner& runner, const std::vector<int32_t>& ids, int64_t pos) {
  cuda::Context& ctx = runner.context();
  ctx.phase_ms().clear();
  ctx.set_profiling(true);
  for (int i = 0; i < 8; i++) {
    int32_t tok = ids[size_t(i)];
    runner.step_device_eager(&tok, 1, pos + i);
  }
  ctx.set_profiling(false);
  auto phases = ctx.phase_ms();
  for (auto& [phase, v] : phases) v /= 8;
  return phases;
}

// "wgmma 1, pdl 1, l2_prefetch 1": which hardware path ran.
std::string path_text(const cuda::KernelPath& p) {
  return "wgmma " + std::to_string(int(p.wgmma)) + ", pdl " + std::to_string(int(p.pdl)) + ", l2_prefetch " +
         std::to_string(int(p.l2_prefetch));
}

// Device-to-device copy of 2 GiB, counting bytes read plus bytes written.
double copy_bandwidth_gbs(cuda::Context& ctx) {
  const size_t bytes = size_t(2) << 30;
  cuda::Buffer<char> a(bytes), b(bytes);
  cuda::synthetic_fill(1, 2, 0, int64_t(bytes / 4), 1.f, 0.f, DType::F32, a.get(), DType::F32, ctx.stream());
  cudaEvent_t e0, e1;
  SEGPIPE_CUDA_CHECK(cudaEventCreate(&e0));
  SEGPIPE_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int i = 0; i < 12; i++) {
    SEGPIPE_CUDA_CHECK(cudaEventRecord(e0, ctx.stream()));
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, ctx.stream()));
    SEGPIPE_CUDA_CHECK(cudaEventRecord(e1, ctx.stream()));
    SEGPIPE_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms;
    SEGPIPE_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 2) t.push_back(ms);
  }
  return 2.0 * double(bytes) / (median(t) * 1e-3) / 1e9;
}

// bf16 GEMM rate through the engine's own gemm_xwT, on random (not zero) data.
double gemm_tflops(cuda::Context& ctx, int64_t M, int64_t N, int64_t K) {
  cuda::Buffer<char> x(size_t(M * K) * 2), w(size_t(N * K) * 2);
  cuda::Buffer<float> y(size_t(M * N));
  cuda::synthetic_fill(3, 4, 0, M * K, 1.f, 0.f, DType::BF16, x.get(), DType::BF16, ctx.stream());
  cuda::synthetic_fill(3, 5, 0, N * K, 0.05f, 0.f, DType::BF16, w.get(), DType::BF16, ctx.stream());
  cudaEvent_t e0, e1;
  SEGPIPE_CUDA_CHECK(cudaEventCreate(&e0));
  SEGPIPE_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int i = 0; i < 15; i++) {
    SEGPIPE_CUDA_CHECK(cudaEventRecord(e0, ctx.stream()));
    cuda::gemm_xwT(ctx.cublas(), x.get(), w.get(), DType::BF16, M, N, K, y.get(), N, 0.f);
    SEGPIPE_CUDA_CHECK(cudaEventRecord(e1, ctx.stream()));
    SEGPIPE_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms;
    SEGPIPE_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 3) t.push_back(ms);
  }
  return 2.0 * double(M) * N * K / (median(t) * 1e-3) / 1e12;
}

// Median milliseconds of fn() on the stream over 10 runs after 3 warm-ups.
template <typename F>
double time_ms(cuda::Context& ctx, F&& fn) {
  cudaEvent_t e0, e1;
  SEGPIPE_CUDA_CHECK(cudaEventCreate(&e0));
  SEGPIPE_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int i = 0; i < 13; i++) {
    SEGPIPE_CUDA_CHECK(cudaEventRecord(e0, ctx.stream()));
    fn();
    SEGPIPE_CUDA_CHECK(cudaEventRecord(e1, ctx.stream()));
    SEGPIPE_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms;
    SEGPIPE_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 3) t.push_back(ms);
  }
  SEGPIPE_CUDA_CHECK(cudaEventDestroy(e0));
  SEGPIPE_CUDA_CHECK(cudaEventDestroy(e1));
  return median(t);
}

// The flash prefill attention kernel alone at the preset's head shapes, T queries from position 0
// (causal): the kernel the context's path runs and, where that is the wgmma kernel, the portable
// (mma.sync) kernel beside it; and the two bf16 conversions of the K and V rows that precede it in a
// layer. Rates count the causal products' flops, 4 T (T+1) / 2 head_dim num_heads. diff: rel. L2 of
// the path's output against the portable kernel's.
struct FlashBench {
  double flops = 0, convert_ms = 0, ms = 0, portable_ms = 0, diff = 0;
  const char* kernel = "";
};
FlashBench flash_bench(cuda::Context& ctx, const ModelConfig& cfg, int64_t T) {
  FlashBench r;
  const cuda::AttnShape s{cfg.num_heads, cfg.num_kv_heads, cfg.head_dim};
  if (!cuda::attention_flash_supported(s)) return r;
  const int64_t qd = cfg.q_dim(), kvd = cfg.kv_dim();
  cuda::Buffer<float> q(size_t(T * qd)), kc(size_t(T * kvd)), vc(size_t(T * kvd));
  cuda::Buffer<char> kb(size_t(T * kvd) * 2), vb(size_t(T * kvd) * 2), out(size_t(T * qd) * 2 * 2);
  cuda::synthetic_fill(9, 1, 0, T * qd, 1.f, 0.f, DType::F32, q.get(), DType::F32, ctx.stream());
  cuda::synthetic_fill(9, 2, 0, T * kvd, 1.f, 0.f, DType::F32, kc.get(), DType::F32, ctx.stream());
  cuda::synthetic_fill(9, 3, 0, T * kvd, 1.f, 0.f, DType::F32, vc.get(), DType::F32, ctx.stream());
  r.convert_ms = time_ms(ctx, [&] {
    cuda::convert(kc.get(), DType::F32, kb.get(), DType::BF16, T * kvd, ctx.stream());
    cuda::convert(vc.get(), DType::F32, vb.get(), DType::BF16, T * kvd, ctx.stream());
  });
  const float scale = static_cast<float>(std::pow(double(cfg.head_dim), -0.5));
  const bool two = ctx.kernels().wgmma && cfg.head_dim == 128;
  r.kernel = two ? "wgmma, 64-key tiles, 2 CTAs/SM" : "mma.sync, 128 queries a block";
  const size_t n = size_t(T * qd);
  auto run = [&](const cuda::KernelPath& path, int slot) {
    char* o = out.get() + size_t(slot) * n * 2;
    return time_ms(ctx, [&] {
      cuda::attention_flash(q.get(), T, 0, s, kb.get(), vb.get(), scale, o, DType::BF16, path, ctx.stream());
    });
  };
  r.flops = 4.0 * double(T) * double(T + 1) / 2.0 * cfg.head_dim * cfg.num_heads;
  r.ms = run(ctx.kernels(), 0);
  if (!two) return r;
  r.portable_ms = run(cuda::KernelPath{}, 1);
  std::vector<uint16_t> h(n * 2);
  SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(h.data(), out.get(), h.size() * 2, cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.sync();
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    const double a = bf16_to_f32(h[i]), b = bf16_to_f32(h[n + i]);
    num += (a - b) * (a - b);
    den += b * b;
  }
  r.diff = std::sqrt(num / std::max(den, 1e-30));
  return r;
}

void print_flash_bench(const FlashBench& f, int64_t T) {
  if (f.flops == 0) return;
  std::printf("flash attention alone, T=%lld, %-34s %8.1f us %7.1f TFLOP/s\n", (long long)T, f.kernel, f.ms * 1e3,
              f.flops / (f.ms * 1e-3) / 1e12);
  if (f.portable_ms > 0)
    std::printf("flash attention alone, T=%lld, %-34s %8.1f us %7.1f TFLOP/s  rel. diff to the above %.2e\n",
                (long long)T, "mma.sync (the portable kernel)", f.portable_ms * 1e3,
                f.flops / (f.portable_ms * 1e-3) / 1e12, f.diff);
  std::printf("flash attention, K and V bf16 copies (2 converts) %8.1f us\n", f.convert_ms * 1e3);
}

// One MoE layer's routed experts alone at the preset's shapes (T tokens, random top-k routing): the
// device-grouped kernels of moe_grouped.cuh on `path` (whole, and each step) against the cuBLAS grouped path
// on the same inputs (gather, grouped GEMM, SwiGLU, grouped GEMM, weighted scatter; its host
// grouping is done once, outside the timing). Rates count 2 * rows * (2I*H + H*I) flops.
struct ExpertBench {
  double flops = 0, dev_ms = 0, group_ms = 0, gate_up_ms = 0, down_ms = 0, cublas_ms = 0;
};
ExpertBench expert_bench(cuda::Context& ctx, const ModelConfig& cfg, int64_t T, const cuda::KernelPath& path) {
  ExpertBench r;
  const int64_t H = cfg.hidden, I = cfg.moe_intermediate;
  const int E = cfg.num_experts, k = cfg.top_k;
  const int64_t S = T * k;
  if (E < 1 || k < 1 || k > E || !cuda::moe_grouped_supported(T, k, H, I, E)) return r;
  cudaStream_t st = ctx.stream();
  cuda::Buffer<char> x(size_t(T * H) * 2), wgu(size_t(E) * size_t(2 * I * H) * 2), wd(size_t(E) * size_t(H * I) * 2);
  cuda::synthetic_fill(9, 1, 0, T * H, 1.f, 0.f, DType::BF16, x.get(), DType::BF16, st);
  cuda::synthetic_fill(9, 2, 0, int64_t(E) * 2 * I * H, 0.05f, 0.f, DType::BF16, wgu.get(), DType::BF16, st);
  cuda::synthetic_fill(9, 3, 0, int64_t(E) * H * I, 0.05f, 0.f, DType::BF16, wd.get(), DType::BF16, st);
  std::vector<int32_t> ids(static_cast<size_t>(S));
  uint32_t lcg = 777;
  for (int64_t t = 0; t < T; t++)
    for (int j = 0; j < k; j++) {
      int32_t e;
      bool dup;
      do {
        e = int32_t((lcg = lcg * 1664525u + 1013904223u) >> 8) % E;
        dup = false;
        for (int q = 0; q < j; q++) dup |= ids[size_t(t * k + q)] == e;
      } while (dup);
      ids[size_t(t * k + j)] = e;
    }
  std::vector<float> wts(static_cast<size_t>(S), 1.0f / float(k));
  cuda::Buffer<int32_t> d_ids(static_cast<size_t>(S)), ws(cuda::moe_grouped_workspace_ints(S, E));
  cuda::Buffer<float> d_w(static_cast<size_t>(S));
  cuda::Buffer<char> slots(size_t(S * H) * 2);  // bf16: moe_slot_dtype of a bf16 grouped request
  cuda::Buffer<char> act(size_t(S * I) * 2);
  SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(d_ids.get(), ids.data(), ids.size() * 4, cudaMemcpyHostToDevice, st));
  SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(d_w.get(), wts.data(), wts.size() * 4, cudaMemcpyHostToDevice, st));
  ctx.sync();
  r.flops = 2.0 * double(S) * double(3 * I * H);
  r.dev_ms = time_ms(ctx, [&] {
    cuda::moe_grouped_experts(x.get(), T, k, d_ids.get(), d_w.get(), 0, E - 1, wgu.get(), wd.get(), I, H, ws.get(),
                              act.get(), slots.get(), path, st);
  });
  r.group_ms = time_ms(ctx, [&] { cuda::moe_grouped_group(d_ids.get(), S, 0, E - 1, ws.get(), path, st); });
  r.gate_up_ms = time_ms(ctx, [&] {
    cuda::moe_grouped_gate_up(x.get(), S, k, 0, E - 1, wgu.get(), I, H, ws.get(), act.get(), path, st);
  });
  r.down_ms = time_ms(ctx, [&] {
    cuda::moe_grouped_down(act.get(), S, 0, E - 1, d_w.get(), wd.get(), I, H, ws.get(), slots.get(), path, st);
  });
  // The cuBLAS path, grouped on the host once.
  std::vector<int32_t> perm;
  std::vector<int64_t> cnt(static_cast<size_t>(E), 0);
  for (int e = 0; e < E; e++)
    for (int64_t s = 0; s < S; s++)
      if (ids[size_t(s)] == e) perm.push_back(int32_t(s)), cnt[size_t(e)]++;
  cuda::Buffer<int32_t> d_perm(static_cast<size_t>(S));
  SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(d_perm.get(), perm.data(), perm.size() * 4, cudaMemcpyHostToDevice, st));
  cuda::Buffer<char> xg(size_t(S * H) * 2), gu(size_t(S * 2 * I) * 2), dd(size_t(S * H) * 2);
  cuda::Buffer<void*> ptrs(3 * static_cast<size_t>(E));
  std::vector<cuda::GemmProblem> up, down;
  int64_t off = 0;
  for (int e = 0; e < E; e++) {
    if (!cnt[size_t(e)]) continue;
    up.push_back({xg.get() + off * H * 2, wgu.get() + int64_t(e) * 2 * I * H * 2, gu.get() + off * 2 * I * 2,
                  cnt[size_t(e)]});
    down.push_back({act.get() + off * I * 2, wd.get() + int64_t(e) * H * I * 2, dd.get() + off * H * 2,
                    cnt[size_t(e)]});
    off += cnt[size_t(e)];
  }
  ctx.sync();
  r.cublas_ms = time_ms(ctx, [&] {
    cuda::moe_gather_rows(x.get(), DType::BF16, d_perm.get(), S, k, H, xg.get(), st);
    cuda::gemm_xwT_many(ctx.cublas(), up, DType::BF16, 2 * I, H, ptrs.get(), true, st);
    cuda::swiglu_rows(gu.get(), DType::BF16, S, I, act.get(), DType::BF16, st);
    cuda::gemm_xwT_many(ctx.cublas(), down, DType::BF16, H, I, ptrs.get(), true, st);
    cuda::moe_scatter_weighted(dd.get(), DType::BF16, d_perm.get(), d_w.get(), S, H, slots.get(), DType::BF16, st);
  });
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "qwen3-omni-30b-a3b-thinker", dtype = "bfloat16", json_out;
  int layers = 0, prompt = 2048, decode = 128, gemv_max = 4;
  int experts = 0;  // --experts: the preset with this many routed experts (top-k unchanged)
  bool ncu = false, read_ceiling = false, l2probe = false;
  GpuKernels kernels = GpuKernels::automatic;  // --gpu-kernels auto|portable
  bool host_grouped = false;  // MoE prefill through the host grouping and cuBLAS (A/B of moe_grouped.cuh)
  bool variants = false, only_decode = false;  // the decode benchmark twice (defaults, again)
  bool attention_only = false;                 // only the flash attention kernel alone (flash_bench)
  bool prefill_only = false;                   // only the flash prefill: median of 9 and the phase profile
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&] { return segpipe::tools::flag_value(argc, argv, i); };
    if (a == "--preset") preset = next();
    else if (a == "--layers") layers = std::atoi(next().c_str());
    else if (a == "--experts") experts = std::atoi(next().c_str());
    else if (a == "--dtype") dtype = next();
    else if (a == "--prompt") prompt = std::atoi(next().c_str());
    else if (a == "--decode") decode = std::atoi(next().c_str());
    else if (a == "--gemv-max-tokens") gemv_max = std::atoi(next().c_str());
    else if (a == "--json") json_out = next();
    else if (a == "--ncu") ncu = true;
    else if (a == "--read-ceiling") read_ceiling = true;
    else if (a == "--l2-probe") l2probe = true;
    else if (a == "--host-grouped") host_grouped = true;
    else if (a == "--gpu-kernels") {
      const std::string v = next();
      const auto k = parse_gpu_kernels(v);
      if (!k) {
        std::fprintf(stderr, "--gpu-kernels: '%s': expected auto or portable\n", v.c_str());
        return 2;
      }
      kernels = *k;
    }
    else if (a == "--variants") variants = true;
    else if (a == "--only-decode") only_decode = true;
    else if (a == "--attention-only") attention_only = true;
    else if (a == "--prefill-only") prefill_only = true;
    else {
      std::fprintf(stderr, "usage: segpipe_bench_cuda [--preset NAME] [--layers N] [--dtype D] [--prompt T] "
                           "[--decode N] [--json FILE] [--variants] [--only-decode] [--host-grouped] "
                           "[--attention-only] [--gpu-kernels auto|portable] [--prefill-only] [--experts N] "
                           "[--read-ceiling] [--l2-probe]\n");
      return 2;
    }
  }
  if (const int rc = tools::bench_preflight(dtype)) return rc;
  try {
    MakeModelOptions mo;
    mo.preset = preset;
    if (layers > 0) mo.num_layers = layers;
    if (experts > 0) mo.num_experts = experts;
    ModelConfig cfg = parse_model_config(synthetic_config(mo), "preset " + preset);
    const std::string card = cuda::device_name(0);
    const cuda::KernelPath path = cuda::select_kernel_path(0, kernels);
    // Which kernels run, in every mode's output.
    const std::string path_line = std::string("kernels ") + to_string(kernels) + ": " + path_text(path);
    double bw = 0, gemm_big = 0, gemm_moe = 0;
    ExpertBench xb, xb_mma;
    FlashBench fb;
    if (read_ceiling) {
      // One MoE layer's chosen experts: k regions of one expert's gate/up + down bytes, experts apart
      const size_t es = dtype == "float32" ? 4 : 2;
      const size_t per_expert = size_t(3) * size_t(cfg.hidden) * size_t(cfg.moe_intermediate) * es;
      const size_t region = per_expert / 4096 * 4096;
      std::printf("== read ceilings: %d regions of %.2f MB (%.1f MB), experts %d apart of %.2f MB, card %s ==\n",
                  cfg.top_k, double(region) / 1e6, double(region) * cfg.top_k / 1e6, cfg.num_experts,
                  double(per_expert) / 1e6, card.c_str());
      for (const auto& r : benchtools::read_ceilings(cfg.top_k, region, per_expert, cfg.num_experts))
        std::printf("  %-36s %8.2f us  %7.1f GB/s\n", r.method.c_str(), r.us, r.gbs);
      return 0;
    }
    if (l2probe) {
      const int64_t H = cfg.hidden, qkv_rows = cfg.q_dim() + 2 * cfg.kv_dim();
      const uint64_t stream = uint64_t(cfg.top_k) * 3 * uint64_t(H) * uint64_t(cfg.moe_intermediate) * 2;
      std::printf("== L2 probe: q/k/v %lld x %lld, o_proj %lld x %lld (bf16), expert stream %.1f MB, card %s ==\n",
                  static_cast<long long>(qkv_rows), static_cast<long long>(H), static_cast<long long>(H),
                  static_cast<long long>(cfg.q_dim()), double(stream) / 1e6, card.c_str());
      std::printf("%s\n", path_line.c_str());
      for (const auto& r : benchtools::l2_probe(path, qkv_rows, H, H, cfg.q_dim(), stream, cfg.vocab, cfg.top_k,
                                                cfg.moe_intermediate))
        std::printf("  %-62s q/k/v %7.2f us %7.1f GB/s%s\n", r.scenario.c_str(), r.us, r.gbs,
                    r.us2 > 0 ? (" | o_proj " + std::to_string(r.us2) + " us").c_str() : "");
      return 0;
    }
    if (attention_only) {
      cuda::Context ctx(0, kernels);
      fb = flash_bench(ctx, cfg, prompt);
      std::printf("== flash attention alone: %s, heads %d/%d, head_dim %d, card %s; %s ==\n", preset.c_str(),
                  cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, card.c_str(), path_line.c_str());
      print_flash_bench(fb, prompt);
      return 0;
    }
    if (!prefill_only) {
      cuda::Context ctx(0, kernels);
      fb = flash_bench(ctx, cfg, prompt);
      bw = copy_bandwidth_gbs(ctx);
      gemm_big = gemm_tflops(ctx, 8192, 8192, 8192);
      gemm_moe = gemm_tflops(ctx, prompt, 4096, cfg.hidden);  // the q/k/v-shaped product of the prefill
      if (cfg.num_experts > 0) {
        xb = expert_bench(ctx, cfg, prompt, ctx.kernels());
        // the portable (mma.sync) kernels beside the wgmma ones
        if (ctx.kernels().wgmma) xb_mma = expert_bench(ctx, cfg, prompt, cuda::KernelPath{});
      }
    }
    RunPlan plan = default_plan("synthetic:" + preset, cfg);
    plan.max_seq = std::max(4096, prompt + decode + 64);
    for (auto& s : plan.segments) s.device = Device{Device::Type::cuda, 0}, s.dtype = *parse_compute_dtype(dtype);
    CudaRunnerOptions ro;
    ro.synthetic = true;
    ro.gemv_max_tokens = gemv_max;
    ro.device_grouped = !host_grouped;
    ro.kernels = kernels;
    double t0 = now_ms();
    auto runner = make_cuda_runner(plan, cfg, ro);
    double load_ms = now_ms() - t0;
    const double wbytes = double(runner->weight_bytes());

    // Tokens: a fixed pseudo-random sequence (the weights are random: any ids do).
    std::vector<int32_t> ids(static_cast<size_t>(std::max(prompt, 64)));
    uint32_t st = 12345;
    for (auto& x : ids) x = int32_t((st = st * 1664525u + 1013904223u) % uint32_t(cfg.vocab));
    if (ncu) {
      runner->step_device(ids.data(), prompt, 0, false);
      runner->step_device(ids.data(), 32, 0, false);
      for (int i = 0; i < 3; i++) runner->step_device_eager(&ids[size_t(i)], 1, 32 + i);
      std::printf("segpipe_bench_cuda --ncu: done\n");
      return 0;
    }

    if (prefill_only) {
      // The default (flash) prefill alone: 1 warm-up, the median of 9, then one with the phase profile.
      std::vector<double> pt;
      for (int i = 0; i < 10; i++) {
        double a = now_ms();
        runner->step_device(ids.data(), prompt, 0, false);
        if (i > 0) pt.push_back(now_ms() - a);
      }
      std::sort(pt.begin(), pt.end());
      cuda::Context& rctx = runner->context();
      rctx.phase_ms().clear();
      rctx.set_profiling(true);
      runner->step_device(ids.data(), prompt, 0, false);
      rctx.set_profiling(false);
      std::printf("== prefill only: %s, %d layers, %s, card %s; %s ==\nprefill %d tokens %.2f ms (min %.2f, max "
                  "%.2f)\nprefill phases (ms, all layers):",
                  preset.c_str(), cfg.num_layers, dtype.c_str(), card.c_str(), path_line.c_str(), prompt, median(pt),
                  pt.front(), pt.back());
      for (auto& [phase, v] : rctx.phase_ms()) std::printf("  %s %.2f", phase.c_str(), v);
      std::printf("\n");
      return 0;
    }

    if (variants) {
      // Decode after a 32-token prompt, CUDA graph (median of 3 runs of --decode steps), then 8
      // eager steps with the phase profile, twice; the same runner and weights.
      const char* const runs_of[] = {"defaults", "defaults, again"};
      const int p0 = 32;
      std::printf("\n== decode variants: %s, %d layers, %s, card %s; %s; %d steps after a %d-token prompt ==\n",
                  preset.c_str(), cfg.num_layers, dtype.c_str(), cuda::device_name(0).c_str(), path_line.c_str(),
                  decode, p0);
      for (const char* name : runs_of) {
        runner->reset_graph();
        std::vector<double> runs;
        for (int rep = 0; rep < 3; rep++) {
          runner->step_device(ids.data(), p0, 0, false);
          double a = 0;
          for (int i = 0; i < decode + 2; i++) {
            if (i == 2) a = now_ms();
            int32_t tok = ids[size_t((i * 7) % 64)];
            runner->step_device(&tok, 1, p0 + i, false);
          }
          runs.push_back((now_ms() - a) / decode);
        }
        // greedy chained on the device (decode_greedy), median of 3
        std::vector<double> chain;
        runner->step_device(ids.data(), p0, 0, false);
        runner->decode_greedy(ids[0], p0, 2);
        for (int rep = 0; rep < 3; rep++) {
          const double a = now_ms();
          runner->decode_greedy(ids[0], p0, decode);
          chain.push_back((now_ms() - a) / decode);
        }
        const auto phases = eager_decode_phases(*runner, ids, p0 + decode + 2);
        std::printf("%-30s graph %7.3f ms/token (runs %.3f %.3f %.3f), device chain %7.3f "
                    "(%.3f %.3f %.3f)  eager phases ms/token:",
                    name, median(runs), runs[0], runs[1], runs[2], median(chain), chain[0], chain[1], chain[2]);
        for (auto& [k, val] : phases) std::printf(" %s %.3f", k.c_str(), val);
        std::printf("\n");
      }
      runner->reset_graph();
      if (only_decode) return 0;
    }

    // Prefill: 1 warm-up, then the median of 5.
    const int64_t H = cfg.hidden, qd = cfg.q_dim(), kvd = cfg.kv_dim(), E = cfg.num_experts, k = cfg.top_k,
                  I = cfg.moe_intermediate, L = cfg.num_layers, V = cfg.vocab;
    const double per_tok_params = double(L) * (H * (qd + 2 * kvd) + qd * H + E * H + k * 3 * I * H);
    const double attn_flops = double(L) * 4.0 * cfg.num_heads * cfg.head_dim * (double(prompt) * (prompt + 1) / 2);
    const double prefill_flops = 2.0 * per_tok_params * prompt + attn_flops + 2.0 * V * H;
    // The default prefill (the flash attention in bf16); the cuBLAS path over materialized scores is
    // measured below on a runner built with flash_attention off.
    auto prefill_median = [&](CudaRunner& r) {
      std::vector<double> pt;
      for (int i = 0; i < 6; i++) {
        double a = now_ms();
        r.step_device(ids.data(), prompt, 0, false);
        if (i > 0) pt.push_back(now_ms() - a);
      }
      return median(pt);
    };
    const double prefill_ms = prefill_median(*runner);
    cuda::Context& rctx = runner->context();
    rctx.phase_ms().clear();
    rctx.set_profiling(true);
    runner->step_device(ids.data(), prompt, 0, false);
    rctx.set_profiling(false);
    auto prefill_phases = rctx.phase_ms();
    const double prefill_tflops = prefill_flops / (prefill_ms * 1e-3) / 1e12;

    // Decode after a 32-token prompt: eager, then with the CUDA graph ([0], [1]); with the fused
    // single-token kernels (dec_ms, this runner) and with the library path they replace (lib_ms, a
    // runner built with fused_decode off, below).
    const int p0 = 32;
    auto decode_ms = [&](CudaRunner& r, double (&out_ms)[2]) {
      r.reset_graph();
      for (int graphs = 0; graphs < 2; graphs++) {
        r.step_device(ids.data(), p0, 0, false);
        double a = 0;
        for (int i = 0; i < decode + 2; i++) {
          if (i == 2) a = now_ms();  // steps 0 and 1: warm-up (and graph capture)
          int32_t tok = ids[size_t((i * 7) % 64)];
          if (graphs)
            r.step_device(&tok, 1, p0 + i, false);
          else
            r.step_device_eager(&tok, 1, p0 + i);
        }
        out_ms[graphs] = (now_ms() - a) / decode;
      }
    };
    double dec_ms[2], lib_ms[2];
    decode_ms(*runner, dec_ms);
    // Greedy decoding chained on the device (decode_greedy): the same graph plus the next-token
    // kernel, replayed back to back; no host round trip (token copy, launch, synchronize) per token.
    double chain_ms = 0;
    {
      runner->reset_graph();
      runner->step_device(ids.data(), p0, 0, false);
      runner->decode_greedy(ids[0], p0, 2);  // the eager step and the capture
      const double a = now_ms();
      runner->decode_greedy(ids[0], p0, decode);
      chain_ms = (now_ms() - a) / decode;
    }
    // What `segpipe generate` runs for greedy decoding, through the same code (Generator: the prompt's
    // prefill, the first token chosen on the host, then the device chain Generator::kGreedyChunk steps
    // per round trip), timed as generate's statistics line reports it: (tokens - 1) / decode time.
    // Median of 3 replies of --decode + 1 tokens after a p0-token prompt.
    double generate_ms = 0;
    {
      std::vector<double> g;
      const std::vector<int32_t> prompt_ids(ids.begin(), ids.begin() + p0);
      for (int rep = 0; rep < 3; rep++) {
        Generator gen(*runner, {}, plan.max_seq);
        Sampler greedy(SamplingParams{});
        const GenerationResult r = gen.run(prompt_ids, greedy, decode + 1, [](int32_t) { return true; });
        g.push_back(r.decode_s * 1e3 / static_cast<double>(r.ids.size() - 1));
      }
      generate_ms = median(g);
    }
    runner->reset_graph();
    const auto decode_phases = eager_decode_phases(*runner, ids, p0 + decode + 2);
    // The library paths on the same weights: a second runner with the flash attention and the fused
    // decode kernels off (built after the first is gone: a full-size model fits the card once).
    runner.reset();
    double prefill_ms_cublas = 0;
    {
      CudaRunnerOptions lo = ro;
      lo.flash_attention = false;
      lo.fused_decode = false;
      auto lib = make_cuda_runner(plan, cfg, lo);
      prefill_ms_cublas = prefill_median(*lib);
      decode_ms(*lib, lib_ms);
    }
    // A single-token product through cuBLAS (the q/k/v projection's shape): achieved bandwidth.
    double gemv_gbs = 0, own_gemv_gbs = 0;
    {
      cuda::Context ctx(0, kernels);
      const int64_t rows = cfg.q_dim() + 2 * cfg.kv_dim(), cols = cfg.hidden;
      cuda::Buffer<char> w(size_t(rows * cols) * 2 * 8), x(size_t(cols) * 2);
      cuda::Buffer<float> y(static_cast<size_t>(rows));
      cuda::synthetic_fill(5, 6, 0, rows * cols * 8, 0.05f, 0.f, DType::BF16, w.get(), DType::BF16, ctx.stream());
      cuda::synthetic_fill(5, 7, 0, cols, 1.f, 0.f, DType::BF16, x.get(), DType::BF16, ctx.stream());
      ctx.sync();
      double a = now_ms();
      for (int i = 0; i < 400; i++)  // 8 weight copies in rotation: no L2 reuse
        cuda::gemm_xwT(ctx.cublas(), x.get(), w.get() + size_t(i % 8) * size_t(rows * cols) * 2, DType::BF16, 1, rows,
                       cols, y.get(), rows, 0.f);
      ctx.sync();
      gemv_gbs = double(rows * cols) * 2 * 400 / ((now_ms() - a) * 1e-3) / 1e9;
      a = now_ms();
      for (int i = 0; i < 400; i++)
        cuda::gemv(x.get(), DType::BF16, w.get() + size_t(i % 8) * size_t(rows * cols) * 2, DType::BF16, rows, cols,
                   y.get(), false, ctx.kernels(), ctx.stream());
      ctx.sync();
      own_gemv_gbs = double(rows * cols) * 2 * 400 / ((now_ms() - a) * 1e-3) / 1e9;
    }
    // Bytes one decode token must read: every active matrix once (attention, router, k experts,
    // lm_head), the embedding row, norms, and the KV cache up to the mean position (float32).
    const double es = dtype == "bfloat16" ? 2.0 : 4.0;
    const double mean_pos = p0 + 2 + decode / 2.0;
    const double tok_bytes = es * (per_tok_params + double(V) * H + H) + double(L) * 2 * mean_pos * kvd * 4;
    const double floor_ms = tok_bytes / (bw * 1e9) * 1e3;
    const double best = std::min(dec_ms[0], dec_ms[1]);

    std::printf("\n== segpipe_bench_cuda: %s, %d layers, %s, card %s; %s ==\n", preset.c_str(), cfg.num_layers,
                dtype.c_str(), card.c_str(), path_line.c_str());
    {
      const uint64_t h = synthetic_name_hash(cfg.tensor_prefix + "embed_tokens.weight");
      std::printf("synthetic embed_tokens[0,:4] (CPU formula): %.8g %.8g %.8g %.8g\n",
                  bf16_to_f32(f32_to_bf16(synthetic_value(0, h, 0, 1.f, 0.f))),
                  bf16_to_f32(f32_to_bf16(synthetic_value(0, h, 1, 1.f, 0.f))),
                  bf16_to_f32(f32_to_bf16(synthetic_value(0, h, 2, 1.f, 0.f))),
                  bf16_to_f32(f32_to_bf16(synthetic_value(0, h, 3, 1.f, 0.f))));
    }
    std::printf("weights on GPU            %10.2f GB (made from the synthetic formula in %.1f s)\n", wbytes / 1e9,
                load_ms / 1e3);
    std::printf("copy bandwidth (r+w)      %10.1f GB/s\n", bw);
    std::printf("bf16 GEMM 8192^3          %10.1f TFLOP/s\n", gemm_big);
    std::printf("bf16 GEMM %dx4096x%d    %10.1f TFLOP/s\n", prompt, int(H), gemm_moe);
    for (const ExpertBench* xp : {&xb, &xb_mma}) {
      const ExpertBench& r = *xp;
      if (r.flops <= 0) continue;
      auto rate = [&](double ms) { return r.flops / (ms * 1e-3) / 1e12; };
      std::printf("experts of 1 layer [%s], %d tokens: device-grouped %.3f ms %.1f TFLOP/s (group %.3f ms, gate_up+SwiGLU "
                  "%.3f ms %.1f TFLOP/s, down+scatter %.3f ms %.1f TFLOP/s); cuBLAS grouped %.3f ms %.1f TFLOP/s\n",
                  xp == &xb_mma || !path.wgmma ? "mma.sync" : "wgmma",
                  prompt, r.dev_ms, rate(r.dev_ms), r.group_ms, r.gate_up_ms, rate(r.gate_up_ms) * 2.0 / 3.0,
                  r.down_ms, rate(r.down_ms) / 3.0, r.cublas_ms, rate(r.cublas_ms));
    }
    print_flash_bench(fb, prompt);
    std::printf("prefill%s %d tokens       %10.2f ms  %8.1f TFLOP/s  = %.2f of the 8192^3 GEMM rate (experts: %s)\n",
                host_grouped ? " (host-grouped MoE)" : "", prompt, prefill_ms, prefill_tflops, prefill_tflops / gemm_big,
                host_grouped ? "cuBLAS" : path.wgmma ? "wgmma" : "mma.sync");
    std::printf("prefill, cuBLAS attention %10.2f ms  %8.1f TFLOP/s  = %.2f of the 8192^3 GEMM rate\n",
                prefill_ms_cublas, prefill_flops / (prefill_ms_cublas * 1e-3) / 1e12,
                prefill_flops / (prefill_ms_cublas * 1e-3) / 1e12 / gemm_big);
    std::printf("decode bytes/token        %10.3f GB -> floor %.3f ms/token (%.0f tokens/s)\n", tok_bytes / 1e9,
                floor_ms, 1e3 / floor_ms);
    std::printf("decode eager              %10.3f ms/token %8.1f tokens/s  = %.2f of the floor\n", dec_ms[0],
                1e3 / dec_ms[0], floor_ms / dec_ms[0]);
    std::printf("decode CUDA graph         %10.3f ms/token %8.1f tokens/s  = %.2f of the floor\n", dec_ms[1],
                1e3 / dec_ms[1], floor_ms / dec_ms[1]);
    std::printf("decode, greedy chain on the device %7.3f ms/token %8.1f tokens/s  = %.2f of the floor\n", chain_ms,
                1e3 / chain_ms, floor_ms / chain_ms);
    std::printf("decode as segpipe generate %9.3f ms/token %8.1f tokens/s  = %.2f of the floor (%.3f of the chain)\n",
                generate_ms, 1e3 / generate_ms, floor_ms / generate_ms, chain_ms / generate_ms);
    std::printf("decode eager, library path %10.3f ms/token %8.1f tokens/s  = %.2f of the floor\n", lib_ms[0],
                1e3 / lib_ms[0], floor_ms / lib_ms[0]);
    std::printf("decode graph, library path %10.3f ms/token %8.1f tokens/s  = %.2f of the floor\n", lib_ms[1],
                1e3 / lib_ms[1], floor_ms / lib_ms[1]);
    std::printf("1-token bf16 product %lldx%d: cuBLAS %.0f GB/s, segpipe gemv %.0f GB/s read\n",
                (long long)(cfg.q_dim() + 2 * cfg.kv_dim()), cfg.hidden, gemv_gbs, own_gemv_gbs);
    std::printf("prefill phases (ms, all layers):");
    for (auto& [phase, v] : prefill_phases) std::printf("  %s %.2f", phase.c_str(), v);
    std::printf("\ndecode phases (ms per token, eager):");
    for (auto& [phase, v] : decode_phases) std::printf("  %s %.3f", phase.c_str(), v);
    std::printf("\n");
    if (!json_out.empty()) {
      std::ofstream f(json_out);
      f << "{\"preset\":\"" << preset << "\",\"layers\":" << cfg.num_layers << ",\"dtype\":\"" << dtype
        << "\",\"card\":\"" << card << "\",\"gpu_kernels\":\"" << to_string(kernels) << "\",\"kernel_path\":{\"wgmma\":"
        << int(path.wgmma) << ",\"pdl\":" << int(path.pdl) << ",\"l2_prefetch\":" << int(path.l2_prefetch) << "}"
        << ",\"weight_bytes\":" << wbytes << ",\"copy_gbs\":" << bw
        << ",\"gemm_tflops\":" << gemm_big << ",\"gemm_prefill_shape_tflops\":" << gemm_moe
        << ",\"prefill_tokens\":" << prompt << ",\"prefill_ms\":" << prefill_ms
        << ",\"prefill_tflops\":" << prefill_tflops << ",\"prefill_ms_cublas_attention\":" << prefill_ms_cublas
        << ",\"flash_alone_us\":" << fb.ms * 1e3 << ",\"flash_kernel\":\"" << fb.kernel
        << "\",\"flash_alone_us_portable\":" << fb.portable_ms * 1e3
        << ",\"decode_tokens\":" << decode
        << ",\"decode_ms_eager\":" << dec_ms[0] << ",\"decode_ms_graph\":" << dec_ms[1]
        << ",\"decode_ms_greedy_chain\":" << chain_ms << ",\"decode_ms_generate\":" << generate_ms
        << ",\"decode_ms_eager_library\":" << lib_ms[0] << ",\"decode_ms_graph_library\":" << lib_ms[1]
        << ",\"gemv_gbs_cublas\":" << gemv_gbs << ",\"gemv_gbs_segpipe\":" << own_gemv_gbs
        << ",\"decode_floor_ms\":" << floor_ms << ",\"decode_bytes_per_token\":" << tok_bytes
        << ",\"best_fraction_of_floor\":" << floor_ms / best << ",\"moe_host_grouped\":" << (host_grouped ? 1 : 0)
        << ",\"experts_layer_ms_device_grouped\":" << xb.dev_ms << ",\"experts_layer_ms_cublas\":" << xb.cublas_ms
        << ",\"experts_layer_ms_portable\":" << xb_mma.dev_ms << ",\"experts_layer_flops\":" << xb.flops << "}\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "segpipe_bench_cuda: %s\n", e.what());
    return 3;
  }
  return 0;
}
