// segpipe bench: CPU benchmarks, each figure beside a ceiling measured in the same run.
//   decode:   tokens/s against the memory floor (active weight bytes per token / measured read
//             bandwidth), and prefill GFLOP/s for a 128-token prompt;
//   pipeline: decode tokens/s of a segmented pipeline against the same pipeline in-process.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sys/mman.h>

#include "orchestrator/commands/cli_args.h"
#include "orchestrator/commands/commands.h"
#include "orchestrator/planning/pipeline_loader.h"
#include "orchestrator/drivers/shm_runner.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/kernels/cpu/simd8.h"
#include "segments/kernels/cpu/thread_pool.h"
#include "segments/model/tensor_map.h"

namespace segpipe {

namespace {

using Clock = std::chrono::steady_clock;

// Read bandwidth of this machine with `threads` threads streaming a buffer far larger than the caches.
double measure_read_gbps(int threads, size_t bytes) {
  void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) throw RuntimeFailure("bench: cannot allocate the bandwidth buffer");
  auto* p = static_cast<float*>(m);
  size_t n = bytes / 4;
  ThreadPool pool(threads);
  pool.parallel_for(static_cast<int64_t>(n), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) p[i] = static_cast<float>(i & 1023);
  });
  double best = 0;
  volatile float sink = 0;
  for (int rep = 0; rep < 5; rep++) {
    auto t0 = Clock::now();
    float partial[64] = {};
    pool.parallel_for(
        static_cast<int64_t>(n / 64),
        [&](int64_t b, int64_t e) {
          using namespace simd;
          V8 a0 = zero8(), a1 = a0, a2 = a0, a3 = a0;
          for (int64_t i = b * 64; i < e * 64; i += 32) {
            a0 = add8(a0, load8(p + i));
            a1 = add8(a1, load8(p + i + 8));
            a2 = add8(a2, load8(p + i + 16));
            a3 = add8(a3, load8(p + i + 24));
          }
          float out[8];
          store8(out, add8(add8(a0, a1), add8(a2, a3)));
          partial[(b * 7) & 63] += out[0] + out[7];
        },
        1024);
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    sink = sink + partial[0];
    best = std::max(best, static_cast<double>(bytes) / s / 1e9);
  }
  munmap(m, bytes);
  return best;
}

uint64_t entry_bytes(Checkpoint& ck, const std::vector<TensorRole>& roles) {
  uint64_t b = 0;
  for (auto& r : roles)
    if (ck.has(r.name)) b += ck.entry(r.name).end - ck.entry(r.name).begin;
  return b;
}

// Weight bytes one decode token reads: one embedding row, every layer's attention, norms and router
// or dense MLP, top-k experts of each MoE layer, the final norm and the lm_head.
uint64_t active_bytes_per_token(Checkpoint& ck, const ModelConfig& c) {
  const TensorEntry& emb = ck.entry(embed_role(c).name);
  uint64_t b = (emb.end - emb.begin) / static_cast<uint64_t>(c.vocab);
  for (int l = 0; l < c.num_layers; l++) {
    b += entry_bytes(ck, layer_roles(c, l));
    if (c.is_moe_layer(l)) b += entry_bytes(ck, expert_roles(c, l, 0, ExpertLayout::PerExpert)) * static_cast<uint64_t>(c.top_k);
  }
  b += entry_bytes(ck, lm_head_roles(c));
  if (c.tie_word_embeddings) b += emb.end - emb.begin;
  return b;
}

// Multiply-adds of one token through the weights (2 FLOPs each), plus attention over `ctx` positions.
double flops_per_token(const ModelConfig& c, double ctx) {
  double H = c.hidden, per = 0;
  for (int l = 0; l < c.num_layers; l++) {
    per += H * (c.q_dim() + 2.0 * c.kv_dim()) + c.q_dim() * H;
    per += 2.0 * c.num_heads * c.head_dim * ctx;  // q·k and p·v
    if (c.is_moe_layer(l))
      per += H * c.num_experts + c.top_k * 3.0 * H * c.moe_intermediate;
    else
      per += 3.0 * H * c.intermediate;
  }
  per += H * c.vocab;
  return 2.0 * per;
}

double decode_tps(Runner& r, int prompt, int tokens, int vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(prompt));
  for (int i = 0; i < prompt; i++) ids[static_cast<size_t>(i)] = (i * 7919 + 13) % vocab;
  std::vector<float> logits;
  r.step(ids.data(), prompt, 0, false, nullptr, logits);
  int32_t next = 1;
  auto t0 = Clock::now();
  for (int i = 0; i < tokens; i++) r.step(&next, 1, prompt + i, false, nullptr, logits);
  return tokens / std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string host_cpu() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

int bench_decode(const CliArgs& a) {
  if (!a.get("--model")) throw InputError("bench decode: --model DIR is required");
  LoadedPlan lp = load_model_plan(*a.get("--model"));
  int threads = static_cast<int>(a.get_int("--threads", default_threads(), 1, 256));
  int tokens = static_cast<int>(a.get_int("--tokens", 32, 1, 100000));
  int prompt = static_cast<int>(a.get_int("--prompt-tokens", 128, 1, 100000));
  lp.plan.threads = threads;
  auto ck = Checkpoint::open(lp.plan.model_dir);
  uint64_t active = active_bytes_per_token(*ck, lp.cfg);
  double gbps = measure_read_gbps(threads, 1ull << 30);
  auto runner = make_inproc_runner(lp.plan);
  decode_tps(*runner, 8, 4, lp.cfg.vocab);  // warm the page cache and the pool
  std::vector<int32_t> ids(static_cast<size_t>(prompt));
  for (int i = 0; i < prompt; i++) ids[static_cast<size_t>(i)] = (i * 7919 + 13) % lp.cfg.vocab;
  std::vector<float> logits;
  double best_prefill = 1e30;
  for (int rep = 0; rep < 3; rep++) {
    auto t0 = Clock::now();
    runner->step(ids.data(), prompt, 0, false, nullptr, logits);
    best_prefill = std::min(best_prefill, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  // FLOPs of the prompt: every token through the weights, attention over its prefix (mean ctx T/2);
  // lm_head only for the last position.
  double prefill_flops = prompt * (flops_per_token(lp.cfg, prompt / 2.0) - 2.0 * lp.cfg.hidden * lp.cfg.vocab) +
                         2.0 * lp.cfg.hidden * lp.cfg.vocab;
  double tps = decode_tps(*runner, prompt, tokens, lp.cfg.vocab);
  double floor_ms = static_cast<double>(active) / (gbps * 1e9) * 1e3;
  std::printf("machine: %s, %d threads\n", host_cpu().c_str(), threads);
  std::printf("model: %s (%s), active weight bytes per token %.1f MB\n", lp.plan.model_dir.c_str(), lp.cfg.arch_name(),
              active / 1e6);
  std::printf("measured read bandwidth: %.2f GB/s\n", gbps);
  std::printf("decode: %.2f tokens/s (%.2f ms/token); memory floor %.2f ms/token (%.2f tokens/s); ratio %.2f\n", tps,
              1e3 / tps, floor_ms, 1e3 / floor_ms, tps / (1e3 / floor_ms));
  std::printf("prefill: %d tokens in %.1f ms = %.1f tokens/s, %.1f GFLOP/s\n", prompt, best_prefill * 1e3,
              prompt / best_prefill, prefill_flops / best_prefill / 1e9);
  return 0;
}

int bench_pipeline(const CliArgs& a) {
  if (!a.get("--model")) throw InputError("bench pipeline: --model DIR is required");
  LoadedPlan lp = load_model_plan(*a.get("--model"));
  int groups = static_cast<int>(a.get_int("--layer-groups", 4, 1, lp.cfg.num_layers));
  int banks = static_cast<int>(a.get_int("--expert-banks", 0, 0, std::max(0, lp.cfg.num_experts)));
  int tokens = static_cast<int>(a.get_int("--tokens", 32, 1, 100000));
  int threads = static_cast<int>(a.get_int("--threads", default_threads(), 1, 256));
  RunPlan p = lp.plan;
  p.threads = threads;
  p.segments.clear();
  p.segments.push_back({"embed", SegmentKind::embeddings});
  for (int g = 0; g < groups; g++) {
    SegmentDesc d{"layers-" + std::to_string(g), SegmentKind::layers};
    d.layer_first = lp.cfg.num_layers * g / groups;
    d.layer_last = lp.cfg.num_layers * (g + 1) / groups - 1;
    d.banks = banks > 0;
    p.segments.push_back(d);
  }
  for (int b = 0; b < banks; b++) {
    SegmentDesc d{"bank-" + std::to_string(b), SegmentKind::experts};
    d.layer_first = 0;
    d.layer_last = lp.cfg.num_layers - 1;
    d.expert_first = lp.cfg.num_experts * b / banks;
    d.expert_last = lp.cfg.num_experts * (b + 1) / banks - 1;
    // Banks compute in parallel: share the cores between them.
    d.threads = std::max(1, threads / banks);
    p.segments.push_back(d);
  }
  p.segments.push_back({"head", SegmentKind::lm_head});
  RunPlan q = p;
  q.inproc = true;
  p.inproc = false;
  auto inproc = make_inproc_runner(q);
  auto shm = make_shm_runner(p);
  decode_tps(*inproc, 8, 4, lp.cfg.vocab);
  decode_tps(*shm, 8, 4, lp.cfg.vocab);
  // Alternate the two so drift on the machine hits both alike; keep the best of three each.
  double ti = 0, ts = 0;
  for (int rep = 0; rep < 3; rep++) {
    ti = std::max(ti, decode_tps(*inproc, 16, tokens, lp.cfg.vocab));
    ts = std::max(ts, decode_tps(*shm, 16, tokens, lp.cfg.vocab));
  }
  std::printf("pipeline: %d layer groups, %d expert banks, %zu processes, %d threads each (banks %d)\n", groups, banks,
              p.segments.size(), threads, banks ? std::max(1, threads / banks) : 0);
  std::printf("decode in-process %.2f tokens/s, segmented %.2f tokens/s, ratio %.3f\n", ti, ts, ts / ti);
  return 0;
}

}  // namespace

int cmd_bench(const Args& args) {
  CliArgs a("bench", args, {"--model", "--tokens", "--prompt-tokens", "--threads", "--layer-groups", "--expert-banks"}, {});
  if (a.help() || a.positional().size() != 1) {
    std::fputs(
        "usage: segpipe bench decode --model DIR [--tokens N] [--prompt-tokens T] [--threads N]\n"
        "       segpipe bench pipeline --model DIR [--layer-groups N] [--expert-banks K] [--tokens N]\n"
        "decode: tokens/s beside the memory floor (active weight bytes per token over measured read\n"
        "        bandwidth) and their ratio; prefill GFLOP/s for a T-token prompt (default 128)\n"
        "pipeline: decode tokens/s of a segmented pipeline against the same pipeline in-process\n",
        a.help() ? stdout : stderr);
    return a.help() ? 0 : 2;
  }
  const std::string& what = a.positional()[0];
  if (what == "decode") return bench_decode(a);
  if (what == "pipeline") return bench_pipeline(a);
  throw InputError("bench: unknown benchmark '" + what + "' (decode, pipeline)");
}

}  // namespace segpipe
