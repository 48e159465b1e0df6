// GPU segments under transport: shm (one process per segment, workers/cuda_worker.h), on a GPU:
//   1. every segment on the GPU, the layers cut in groups: each boundary of the prefill, the router
//      choices and 8 greedy decode steps (logits) bit-identical to the same plan run in-process on
//      the GPU (CudaRunner); float32 and bfloat16, MoE and dense;
//   2. mixed CPU/GPU pipelines (the shared arena registered for the GPU where they meet) against the
//      committed transformers goldens in float32, exactly as `segpipe verify` compares;
//   3. a GPU layers worker killed mid-generation: with restart, the run continues bit for bit (the
//      KV cache lives in the orchestrator's device arena); without, a RuntimeFailure naming it;
//   4. GPU expert banks as processes (2 and 3 banks, f32 and bf16) bit-identical to the same plan
//      in-process on the GPU, as in 1; a bank SIGKILLed mid-step: restart continues bit for bit,
//      without restart a RuntimeFailure naming the bank;
//   5. segments on two GPUs (skipped with one): against the goldens, and all-GPU f32 bit-identical
//      to the single-device run of the same split; a device that does not exist: an InputError
//      naming the segment before any worker starts;
//   6. gpu_memory: unified (on a discrete GPU through mapped host memory: correct, slower): embeddings,
//      two layers groups with expert banks and lm_head as processes, bit-identical to the same run
//      under gpu_memory: device (f32 and bf16), with no device arena, the shared state in the shared
//      arena and the checkpoint's pages given back by every GPU worker; the in-process GPU runner
//      likewise; a layers worker killed under unified continues bit for bit (its KV cache lives in
//      the shared arena).
// Needs the segpipe command's libraries (workers, shm): it is its own worker executable
// (`test_cuda_shm __worker ...`). Exits 77 where no GPU is visible.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gpu_kernels_arg.h"
#include "gpu_test.h"
#include "orchestrator/debugging/capture.h"
#include "orchestrator/drivers/cuda_ipc.h"
#include "orchestrator/drivers/cuda_mps.h"
#include "orchestrator/drivers/cuda_runner.h"
#include "orchestrator/debugging/golden.h"
#include "orchestrator/planning/run_plan.h"
#include "orchestrator/drivers/shm_runner.h"
#include "orchestrator/reports/memory_report.h"
#include "segments/cuda/unified_memory.h"
#include "segments/model/config_file.h"
#include "workers/worker_main.h"

using namespace segpipe;
using namespace segpipe::gputest;
namespace fs = std::filesystem;

namespace {

std::string g_source = SEGPIPE_SOURCE_DIR;
GpuKernels g_kernels = GpuKernels::automatic;  // --gpu-kernels=: every plan's gpu_kernels

struct Seg {
  const char* name;
  SegmentKind kind;
  int l0 = -1, l1 = -1;
  const char* device = "cuda:0";
  bool banks = false;     // layers: experts: banks
  int e0 = -1, e1 = -1;   // experts
};

Seg banked(const char* name, int l0, int l1, const char* device = "cuda:0") {
  return {name, SegmentKind::layers, l0, l1, device, true};
}
Seg bank(const char* name, int l0, int l1, int e0, int e1, const char* device = "cuda:0") {
  return {name, SegmentKind::experts, l0, l1, device, false, e0, e1};
}

RunPlan make_plan(const std::string& model, const std::vector<Seg>& segs, const std::string& dtype) {
  RunPlan p;
  p.model_dir = g_source + "/models/" + model;
  p.tokenizer_dir = p.model_dir;
  p.source = "test plan (" + model + ")";
  p.inproc = false;
  p.max_seq = 256;
  p.threads = 2;
  p.gpu_kernels = g_kernels;  // the worker processes' and the in-process baselines' kernels
  for (const Seg& s : segs) {
    SegmentDesc d{s.name, s.kind};
    d.layer_first = s.l0;
    d.layer_last = s.l1;
    d.banks = s.banks;
    d.expert_first = s.e0;
    d.expert_last = s.e1;
    d.device = *parse_device(s.device);
    d.dtype = std::string(s.device) == "cpu" ? ComputeDType::float32 : *parse_compute_dtype(dtype);
    p.segments.push_back(d);
  }
  return p;
}

int32_t argmax(const std::vector<float>& v, size_t off, size_t n) {
  size_t best = 0;
  for (size_t i = 1; i < n; i++)
    if (v[off + i] > v[off + best]) best = i;
  return static_cast<int32_t>(best);
}

// Prefill with every boundary captured, then `steps` greedy decode steps; returns the logits of
// every step (prefill: all positions).
std::vector<std::vector<float>> run(Runner& r, const std::vector<int32_t>& prompt, int steps, Capture* cap) {
  std::vector<std::vector<float>> out;
  std::vector<float> l;
  const int64_t T = static_cast<int64_t>(prompt.size());
  r.step(prompt.data(), T, 0, true, cap, l);
  out.push_back(l);
  const size_t V = static_cast<size_t>(r.vocab());
  int32_t tok = argmax(l, l.size() - V, V);
  for (int n = 0; n < steps; n++) {
    r.step(&tok, 1, T + n, false, nullptr, l);
    out.push_back(l);
    tok = argmax(l, 0, V);
  }
  return out;
}

std::vector<int32_t> prompt_for(const ModelConfig& cfg, int n) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; i++) p.push_back(static_cast<int32_t>((i * 7919 + 13) % cfg.vocab));
  return p;
}

// Two runs of the same prompt compared bit for bit: every captured boundary, every route, the
// prefill logits and `steps` greedy decode steps. Prints one check line.
void expect_identical(Checks& c, Runner& ref, Runner& other, const std::vector<int32_t>& prompt, int steps,
                      const std::string& label) {
  Capture ca, cb;
  std::vector<std::vector<float>> la = run(ref, prompt, steps, &ca), lb = run(other, prompt, steps, &cb);
  int differ = 0, n = 0;
  std::string first;
  for (const std::string& name : ca.order) {
    n++;
    auto it = cb.tensors.find(name);
    bool same = it != cb.tensors.end() && it->second.size() == ca.tensors[name].size() &&
                std::memcmp(it->second.data(), ca.tensors[name].data(), it->second.size() * 4) == 0;
    if (!same && first.empty()) first = name;
    differ += !same;
  }
  for (auto& [layer, ra] : ca.routes) {
    n++;
    auto it = cb.routes.find(layer);
    bool same = it != cb.routes.end() && it->second.experts == ra.experts &&
                std::memcmp(it->second.weights.data(), ra.weights.data(), ra.weights.size() * 4) == 0;
    if (!same && first.empty()) first = "routes of layer " + std::to_string(layer);
    differ += !same;
  }
  bool logits_same = la.size() == lb.size();
  for (size_t i = 0; logits_same && i < la.size(); i++)
    logits_same = la[i].size() == lb[i].size() && std::memcmp(la[i].data(), lb[i].data(), la[i].size() * 4) == 0;
  c.expect(differ == 0 && n > 0 && logits_same,
           "%s: %d/%d boundaries+routes bit-identical%s%s, prefill + %d decode logits %s", label.c_str(), n - differ, n,
           first.empty() ? "" : ", first differing: ", first.c_str(), steps, logits_same ? "bit-identical" : "DIFFER");
}

// The plan under shm against the same plan in-process on the GPU (CudaRunner).
void expect_same_as_inproc(Checks& c, const RunPlan& plan, const ModelConfig& cfg, const std::string& label) {
  RunPlan inproc = plan;
  inproc.inproc = true;
  auto prompt = prompt_for(cfg, 12);
  ShmOptions so;
  so.capture_tokens = static_cast<int64_t>(prompt.size());
  auto ref = make_cuda_runner(inproc, cfg);
  auto shm = make_shm_runner_cuda(plan, so, {});
  expect_identical(c, *ref, *shm, prompt, 8, label);
}

void test_bit_identical(Checks& c) {
  struct Case {
    const char* model;
    const char* dtype;
    std::vector<Seg> segs;
  };
  std::vector<Case> cases = {
      {"tiny-qwen3-moe", "float32",
       {{"embed", SegmentKind::embeddings}, {"layers-a", SegmentKind::layers, 0, 1}, {"layers-b", SegmentKind::layers, 2, 4},
        {"head", SegmentKind::lm_head}}},
      {"tiny-qwen3-moe", "bfloat16",
       {{"embed", SegmentKind::embeddings}, {"layers-a", SegmentKind::layers, 0, 0}, {"layers-b", SegmentKind::layers, 1, 3},
        {"layers-c", SegmentKind::layers, 4, 4}, {"head", SegmentKind::lm_head}}},
      {"tiny-qwen3-dense", "float32",
       {{"embed", SegmentKind::embeddings}, {"layer-0", SegmentKind::layers, 0, 0}, {"layer-1", SegmentKind::layers, 1, 2},
        {"head", SegmentKind::lm_head}}},
      {"tiny-qwen3-omni", "bfloat16",
       {{"embed", SegmentKind::embeddings}, {"layers-a", SegmentKind::layers, 0, 1}, {"layers-b", SegmentKind::layers, 2, -2},
        {"head", SegmentKind::lm_head}}},
      // Qwen2-MoE (q/k/v biases, no q/k norm, a shared expert; layer 2 dense): MHA and GQA checkpoints
      {"tiny-qwen2-moe", "float32",
       {{"embed", SegmentKind::embeddings}, {"layers-a", SegmentKind::layers, 0, 1}, {"layers-b", SegmentKind::layers, 2, -2},
        {"head", SegmentKind::lm_head}}},
      {"tiny-qwen2-moe-v5", "bfloat16",
       {{"embed", SegmentKind::embeddings}, {"layers-a", SegmentKind::layers, 0, 0}, {"layers-b", SegmentKind::layers, 1, -2},
        {"head", SegmentKind::lm_head}}},
  };
  for (Case& cs : cases) {
    const std::string dir = g_source + "/models/" + cs.model;
    ModelConfig cfg = read_model_config(dir);
    for (auto& s : cs.segs)
      if (s.l1 == -2) s.l1 = cfg.num_layers - 1;
    RunPlan plan = make_plan(cs.model, cs.segs, cs.dtype);
    expect_same_as_inproc(c, plan, cfg,
                          std::string("shm GPU vs in-process GPU ") + cs.model + " " + cs.dtype + ", " +
                              std::to_string(plan.segments.size()) + " processes");
  }
}

// `segs` fitted to the model (l1 == -2: its last layer; ranges clamped, segments that became empty
// dropped), run under shm against every committed golden of the model in float32, exactly as
// `segpipe verify` compares (tolerance 1e-4).
void expect_goldens(Checks& c, const char* model, std::vector<Seg> segs, const char* what) {
  const std::string dir = g_source + "/models/" + model;
  ModelConfig cfg = read_model_config(dir);
  for (auto& s : segs) {
    if (s.l1 == -2) s.l1 = cfg.num_layers - 1;
    if (s.l0 >= cfg.num_layers) s.l0 = cfg.num_layers - 1;
    if (s.l1 >= cfg.num_layers) s.l1 = cfg.num_layers - 1;
  }
  // drop layers segments that became empty or overlap on small models
  std::vector<Seg> ok;
  int next = 0;
  for (auto& s : segs) {
    if (s.kind == SegmentKind::layers) {
      if (s.l0 < next) s.l0 = next;
      if (s.l0 > s.l1) continue;
      next = s.l1 + 1;
    }
    ok.push_back(s);
  }
  RunPlan plan = make_plan(model, ok, "float32");
  std::vector<std::string> goldens;
  for (auto& e : fs::directory_iterator(dir + "/goldens"))
    if (e.path().extension() == ".safetensors") goldens.push_back(e.path().string());
  std::sort(goldens.begin(), goldens.end());
  std::vector<Golden> gs;
  ShmOptions so;
  for (auto& g : goldens) {
    gs.push_back(load_golden(g, cfg));
    so.capture_tokens = std::max<int64_t>(so.capture_tokens, static_cast<int64_t>(gs.back().input_ids.size()));
  }
  auto runner = make_shm_runner_cuda(plan, so, {});
  std::string layout;
  for (auto& s : ok) layout += std::string(layout.empty() ? "" : " ") + s.name + "@" + s.device;
  for (const Golden& g : gs) {
    GoldenReport r = verify_golden(*runner, g, cfg, 1e-4);
    double worst = 0;
    for (auto& b : r.boundaries) worst = std::max(worst, b.rel_l2);
    c.expect(r.passed, "%s %s [%s] golden %s: worst rel_l2 %.2e, %s", what, model, layout.c_str(),
             fs::path(r.golden).filename().c_str(), worst, r.passed ? "passed" : "FAILED");
  }
}

void test_mixed_goldens(Checks& c) {
  // cpu/gpu alternation: every kind of meeting (host arena both ways, and one GPU-GPU device slot)
  std::vector<std::vector<Seg>> pipes = {
      {{"embed", SegmentKind::embeddings, -1, -1, "cpu"}, {"layers-a", SegmentKind::layers, 0, 1},
       {"layers-b", SegmentKind::layers, 2, 3, "cpu"}, {"layers-c", SegmentKind::layers, 4, -2}, {"head", SegmentKind::lm_head, -1, -1, "cpu"}},
      {{"embed", SegmentKind::embeddings}, {"layers-a", SegmentKind::layers, 0, 1}, {"layers-b", SegmentKind::layers, 2, -2, "cpu"},
       {"head", SegmentKind::lm_head}},
  };
  for (const char* model : {"tiny-qwen3-moe", "tiny-qwen3-dense", "tiny-qwen2-moe"})
    for (auto& segs : pipes) expect_goldens(c, model, segs, "mixed");
}

// `plan` run clean, then with SEGPIPE_FAULT=`fault` (segment `victim` SIGKILLed) with restart (the
// 9 steps' logits must be bit-identical to the clean run) and without (a RuntimeFailure naming it).
void expect_restart(Checks& c, RunPlan plan, const ModelConfig& cfg, const char* victim, const char* fault,
                    const char* what) {
  plan.timeout_ms = 4000;
  auto prompt = prompt_for(cfg, 10);
  std::vector<std::vector<float>> clean, restarted;
  ShmOptions so;
  so.capture_tokens = static_cast<int64_t>(prompt.size());  // the prefill asks for every position's logits
  {
    auto r = make_shm_runner_cuda(plan, so, {});
    clean = run(*r, prompt, 8, nullptr);
  }
  setenv("SEGPIPE_FAULT", fault, 1);
  plan.restart = true;
  bool threw = false;
  try {
    auto r = make_shm_runner_cuda(plan, so, {});
    restarted = run(*r, prompt, 8, nullptr);
  } catch (const std::exception& e) {
    threw = true;
    std::printf("  restart run failed: %s\n", e.what());
  }
  bool same = !threw && clean.size() == restarted.size();
  for (size_t i = 0; same && i < clean.size(); i++)
    same = std::memcmp(clean[i].data(), restarted[i].data(), clean[i].size() * 4) == 0;
  c.expect(same, "%s, restart: the 9 steps' logits %s the uninterrupted run", what,
           same ? "bit-identical to" : "DIFFER from");
  plan.restart = false;
  std::string msg;
  try {
    auto r = make_shm_runner_cuda(plan, so, {});
    run(*r, prompt, 8, nullptr);
  } catch (const RuntimeFailure& e) {
    msg = e.what();
  } catch (const std::exception& e) {
    msg = std::string("(not a RuntimeFailure) ") + e.what();
  }
  unsetenv("SEGPIPE_FAULT");
  bool named = msg.find(victim) != std::string::npos && msg.find("not a RuntimeFailure") == std::string::npos;
  c.expect(named, "%s, without restart: RuntimeFailure (exit 3) naming '%s': \"%s\"", what, victim, msg.c_str());
}

void test_restart(Checks& c) {
  const std::string model = "tiny-qwen3-moe";
  ModelConfig cfg = read_model_config(g_source + "/models/" + model);
  std::vector<Seg> segs = {{"embed", SegmentKind::embeddings}, {"layers-a", SegmentKind::layers, 0, 1},
                           {"layers-b", SegmentKind::layers, 2, 4}, {"head", SegmentKind::lm_head}};
  // SIGKILL at layers-b's 5th step (the 4th decode step, after its graph was captured).
  expect_restart(c, make_plan(model, segs, "bfloat16"), cfg, "layers-b", "layers-b:step:5:9",
                 "GPU layers worker killed at its 5th step");
}

// Expert banks on the GPU as processes: tiny-qwen3-moe (5 layers, layer 1 dense, 8 experts, top-2),
// and tiny-qwen2-moe (its shared experts computed by the layers segments).
void test_banks(Checks& c) {
  const char* model = "tiny-qwen3-moe";
  ModelConfig cfg = read_model_config(g_source + "/models/" + model);
  struct Case {
    const char* what;
    std::vector<Seg> segs;
  };
  std::vector<Case> cases = {
      // 2 banks over every layer, serving two layers segments
      {"2 banks",
       {{"embed", SegmentKind::embeddings}, banked("layers-a", 0, 1), banked("layers-b", 2, 4), bank("bank-lo", 0, 4, 0, 3),
        bank("bank-hi", 0, 4, 4, 7), {"head", SegmentKind::lm_head}}},
      // 3 uneven banks serving the first layers segment; the second computes its experts locally
      {"3 banks",
       {{"embed", SegmentKind::embeddings}, bank("bank-a", 0, 2, 0, 2), banked("layers-a", 0, 2), bank("bank-b", 0, 2, 3, 5),
        bank("bank-c", 0, 2, 6, 7), {"layers-b", SegmentKind::layers, 3, 4}, {"head", SegmentKind::lm_head}}},
  };
  for (const char* dtype : {"float32", "bfloat16"})
    for (const Case& cs : cases) {
      RunPlan plan = make_plan(model, cs.segs, dtype);
      expect_same_as_inproc(c, plan, cfg,
                            std::string("GPU banks as processes vs in-process GPU banks, ") + model + " " + dtype + ", " +
                                cs.what + ", " + std::to_string(plan.segments.size()) + " processes");
    }
  // Qwen2-MoE (4 layers, layer 2 dense, 8 experts top-4 beside a shared expert): the banks hold the
  // routed experts, the layers segments their layers' shared experts.
  const char* q2 = "tiny-qwen2-moe";
  ModelConfig q2cfg = read_model_config(g_source + "/models/" + q2);
  const std::vector<Seg> q2segs = {{"embed", SegmentKind::embeddings}, banked("layers-a", 0, 1), banked("layers-b", 2, 3),
                                   bank("bank-lo", 0, 3, 0, 3),          bank("bank-hi", 0, 3, 4, 7),
                                   {"head", SegmentKind::lm_head}};
  for (const char* dtype : {"float32", "bfloat16"}) {
    RunPlan plan = make_plan(q2, q2segs, dtype);
    expect_same_as_inproc(c, plan, q2cfg,
                          std::string("GPU banks as processes vs in-process GPU banks, ") + q2 + " " + dtype +
                              ", 2 banks, " + std::to_string(plan.segments.size()) + " processes");
  }
}

void test_bank_restart(Checks& c) {
  const char* model = "tiny-qwen3-moe";
  ModelConfig cfg = read_model_config(g_source + "/models/" + model);
  std::vector<Seg> segs = {{"embed", SegmentKind::embeddings}, banked("layers-a", 0, 1), banked("layers-b", 2, 4),
                           bank("bank-lo", 0, 4, 0, 3), bank("bank-hi", 0, 4, 4, 7), {"head", SegmentKind::lm_head}};
  // 4 MoE layers (0, 2, 3, 4): requests 1-4 are the prefill, 5-8 the first decode step, 9-12 the
  // second; the 11th is layer 3, inside layers-b after it wrote layer 2's KV rows at this position.
  expect_restart(c, make_plan(model, segs, "bfloat16"), cfg, "bank-hi", "bank-hi:experts:11:9",
                 "GPU expert bank killed at its 11th request");
}

// gpu_memory: unified against gpu_memory: device, the same plan otherwise (tiny-qwen3-moe: 5 layers,
// 8 experts in two banks serving both layers groups). On an H100 both are explicit: automatic resolves
// to device there (checked against the device's attributes).
void test_unified(Checks& c) {
  const char* model = "tiny-qwen3-moe";
  ModelConfig cfg = read_model_config(g_source + "/models/" + model);
  const bool shares = cuda::shares_host_memory(0);
  const cuda::HostAccess access = cuda::host_access(0);
  c.expect(cuda::resolve_gpu_memory(GpuMemory::automatic, 0) == (shares ? GpuMemory::unified : GpuMemory::device),
           "cuda:0 %s the host's memory: gpu_memory auto resolves to %s; checkpoint read in place through: %s",
           shares ? "shares" : "does not share", to_string(cuda::resolve_gpu_memory(GpuMemory::automatic, 0)),
           cuda::to_string(access));
  std::vector<Seg> segs = {{"embed", SegmentKind::embeddings}, banked("layers-a", 0, 1), banked("layers-b", 2, 4),
                           bank("bank-lo", 0, 4, 0, 3), bank("bank-hi", 0, 4, 4, 7), {"head", SegmentKind::lm_head}};
  auto prompt = prompt_for(cfg, 12);
  ShmOptions so;
  so.capture_tokens = static_cast<int64_t>(prompt.size());
  for (const char* dtype : {"float32", "bfloat16"}) {
    RunPlan dev = make_plan(model, segs, dtype);
    dev.gpu_memory = GpuMemory::device;
    RunPlan uni = dev;
    uni.gpu_memory = GpuMemory::unified;
    const std::string what = std::string(model) + " " + dtype + ", " + std::to_string(dev.segments.size()) + " processes";
    {
      auto a = make_shm_runner_cuda(dev, so, {});
      auto b = make_shm_runner_cuda(uni, so, {});
      // Where the shared state is: a device arena under device, none under unified.
      const auto ga = a->gpu_devices(), gb = b->gpu_devices();
      const bool placed = ga.size() == 1 && ga[0].memory == GpuMemory::device && ga[0].device_arena_bytes > 0 &&
                          gb.size() == 1 && gb[0].memory == GpuMemory::unified && gb[0].device_arena_bytes == 0 &&
                          gb[0].shared_arena_bytes > 0;
      c.expect(placed, "%s: device arena of cuda:0 %llu bytes under device, %llu under unified (shared arena holds %llu)",
               what.c_str(), ga.empty() ? 0ull : static_cast<unsigned long long>(ga[0].device_arena_bytes),
               gb.empty() ? 0ull : static_cast<unsigned long long>(gb[0].device_arena_bytes),
               gb.empty() ? 0ull : static_cast<unsigned long long>(gb[0].shared_arena_bytes));
      // The checkpoint's pages given back once each GPU worker's device read them (held once).
      uint64_t in_place = 0, resident = 0;
      bool modes = true;
      for (const SegmentReport& r : b->reports()) {
        modes &= r.gpu_memory == "unified";
        in_place += r.weights_in_place;
        resident = std::max(resident, read_proc_memory(r.pid).rss_weights);
      }
      c.expect(modes && (access == cuda::HostAccess::copy || in_place > 0) && resident <= (64u << 10),
               "%s, unified: every segment reports gpu_memory unified, %llu checkpoint tensors read in place (%s), "
               "at most %llu bytes of checkpoint pages resident in a GPU worker",
               what.c_str(), static_cast<unsigned long long>(in_place), cuda::to_string(access),
               static_cast<unsigned long long>(resident));
      expect_identical(c, *a, *b, prompt, 8, "shm gpu_memory unified vs device, " + what);
    }
    // The in-process GPU runner: the checkpoint read in place (its KV caches are its own either way).
    RunPlan dev_in = dev, uni_in = uni;
    dev_in.inproc = uni_in.inproc = true;
    auto ra = make_cuda_runner(dev_in, cfg);
    auto rb = make_cuda_runner(uni_in, cfg);
    c.expect(ra->gpu_memory() == GpuMemory::device && rb->gpu_memory() == GpuMemory::unified &&
                 (access == cuda::HostAccess::copy || rb->weights_read_in_place() > 0) && ra->weights_read_in_place() == 0,
             "in-process %s: gpu_memory %s / %s, %llu checkpoint tensors read in place under unified", what.c_str(),
             to_string(ra->gpu_memory()), to_string(rb->gpu_memory()),
             static_cast<unsigned long long>(rb->weights_read_in_place()));
    expect_identical(c, *ra, *rb, prompt, 8, "in-process GPU gpu_memory unified vs device, " + std::string(model) + " " + dtype);
    auto shm = make_shm_runner_cuda(uni, so, {});
    expect_identical(c, *rb, *shm, prompt, 8, "shm vs in-process GPU, both unified, " + what);
  }
  RunPlan r = make_plan(model, segs, "bfloat16");
  r.gpu_memory = GpuMemory::unified;
  expect_restart(c, r, cfg, "layers-b", "layers-b:step:5:9", "gpu_memory unified, GPU layers worker killed at its 5th step");
}

// Segments on two GPUs. Needs 2 visible devices; otherwise the case is skipped (counted as such,
// not passed): `test_cuda_shm two-devices` alone then exits 77 (its own ctest entry).
void test_two_devices(Checks& c) {
  const int n = cuda::device_count();
  if (n < 2) {
    c.skip("two devices: %d CUDA device%s visible, the multi-device checks need 2", n, n == 1 ? " is" : "s are");
    return;
  }
  const char* model = "tiny-qwen3-moe";
  std::vector<Seg> two = {{"embed", SegmentKind::embeddings, -1, -1, "cuda:0"}, {"layers-a", SegmentKind::layers, 0, 1, "cuda:0"},
                          {"layers-b", SegmentKind::layers, 2, -2, "cuda:1"}, {"head", SegmentKind::lm_head, -1, -1, "cuda:1"}};
  std::vector<Seg> with_cpu = {{"embed", SegmentKind::embeddings, -1, -1, "cuda:0"},
                               {"layers-a", SegmentKind::layers, 0, 1, "cuda:0"},
                               {"layers-b", SegmentKind::layers, 2, 2, "cpu"},
                               {"layers-c", SegmentKind::layers, 3, -2, "cuda:1"},
                               {"head", SegmentKind::lm_head, -1, -1, "cuda:1"}};
  std::vector<Seg> banks_on_1 = {{"embed", SegmentKind::embeddings, -1, -1, "cuda:0"},
                                 {"layers-a", SegmentKind::layers, 0, 1, "cuda:0"},
                                 banked("layers-b", 2, 4, "cuda:1"),
                                 bank("bank-lo", 2, 4, 0, 3, "cuda:1"),
                                 bank("bank-hi", 2, 4, 4, 7, "cuda:1"),
                                 {"head", SegmentKind::lm_head, -1, -1, "cuda:1"}};
  for (const char* m : {"tiny-qwen3-moe", "tiny-qwen3-dense"}) {
    expect_goldens(c, m, two, "two devices");
    expect_goldens(c, m, with_cpu, "two devices and the CPU");
  }
  expect_goldens(c, model, banks_on_1, "two devices, banks on cuda:1");
  // The same split on one device: the same kernels in the same dtype, so the same bits.
  ModelConfig cfg = read_model_config(g_source + "/models/" + model);
  for (auto& s : two)
    if (s.l1 == -2) s.l1 = cfg.num_layers - 1;
  std::vector<Seg> one = two;
  for (auto& s : one) s.device = "cuda:0";
  auto prompt = prompt_for(cfg, 12);
  ShmOptions so;
  so.capture_tokens = static_cast<int64_t>(prompt.size());
  auto a = make_shm_runner_cuda(make_plan(model, one, "float32"), so, {});
  auto b = make_shm_runner_cuda(make_plan(model, two, "float32"), so, {});
  expect_identical(c, *a, *b, prompt, 8, "two devices vs one device, same split, f32");
}

// A device that does not exist: an InputError naming the segment and the device, before any worker.
void test_missing_device(Checks& c) {
  const int n = cuda::device_count();
  if (n > 7) {
    c.skip("missing device: %d CUDA devices are visible, cuda:7 exists", n);
    return;
  }
  const char* model = "tiny-qwen3-moe";
  std::vector<Seg> segs = {{"embed", SegmentKind::embeddings}, {"layers", SegmentKind::layers, 0, 4},
                           {"head", SegmentKind::lm_head, -1, -1, "cuda:7"}};
  std::string msg;
  bool input = false;
  try {
    make_shm_runner_cuda(make_plan(model, segs, "float32"), {}, {});
  } catch (const InputError& e) {
    input = true;
    msg = e.what();
  } catch (const std::exception& e) {
    msg = e.what();
  }
  // No worker was started: no child process but the private MPS daemon (SEGPIPE_GPU_SHARING=mps).
  bool no_child = true;
  if (!fs::exists("/proc/self/task/" + std::to_string(getpid()) + "/children")) {  // kernel without the list
    errno = 0;
    no_child = waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD;
  } else
  for (const auto& t : fs::directory_iterator("/proc/self/task")) {
    std::ifstream ch(t.path() / "children");
    for (long pid; ch >> pid;) {
      std::string comm;
      std::ifstream(fs::path("/proc") / std::to_string(pid) / "comm") >> comm;
      if (comm.rfind("nvidia-cuda-mps", 0) != 0) no_child = false;
    }
  }
  c.expect(input && msg.find("'head'") != std::string::npos && msg.find("cuda:7") != std::string::npos && no_child,
           "cuda:7 on a machine with %d device%s: InputError (exit 2), no worker process left%s: \"%s\"", n,
           n == 1 ? "" : "s", no_child ? "" : " (a child process exists!)", msg.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (const auto rc = run_if_worker(argc, argv)) return *rc;
  g_kernels = take_gpu_kernels_arg(argc, argv);
  for (int i = 1; i + 1 < argc; i++)
    if (std::string(argv[i]) == "--source") g_source = argv[i + 1];
  // SEGPIPE_GPU_SHARING=mps: every run of this process, the in-process baselines included, through
  // one private MPS server, started before the first CUDA call so that this process joins it too.
  if (const char* v = std::getenv("SEGPIPE_GPU_SHARING"); v && std::string(v) == "mps") {
    std::string why = start_private_mps();
    if (!why.empty()) {
      std::fprintf(stderr, "test_cuda_shm: SEGPIPE_GPU_SHARING=mps but no private MPS server: %s\n", why.c_str());
      return 1;
    }
    std::printf("test_cuda_shm: GPU processes through a private MPS server\n");
  }
  if (const int rc = gpu_start("test_cuda_shm"); rc >= 0) return rc;
  Checks c;
  // One case alone: `test_cuda_shm NAME` (or SEGPIPE_TEST_ONLY=NAME); "all but two-devices": the
  // default ctest entry, so that a one-GPU machine reports the two-device case as skipped in its own
  // entry (test_cuda_shm_two_devices) rather than passing it inside this one.
  std::string only = std::getenv("SEGPIPE_TEST_ONLY") ? std::getenv("SEGPIPE_TEST_ONLY") : "";
  bool but_two = false;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--source") {
      i++;
    } else if (a == "--all-but-two-devices") {
      but_two = true;
    } else if (a.rfind("--", 0) != 0) {
      only = a;
    }
  }
  auto guard = [&](const char* name, void (*fn)(Checks&)) {
    if (!only.empty() && only != name) return;
    if (but_two && std::string(name) == "two-devices") return;
    try {
      fn(c);
    } catch (const std::exception& e) {
      c.expect(false, "%s: error: %s", name, e.what());
    }
  };
  guard("missing-device", test_missing_device);  // first: it checks that no worker process was ever started
  guard("identical", test_bit_identical);
  guard("mixed", test_mixed_goldens);
  guard("restart", test_restart);
  guard("banks", test_banks);
  guard("bank-restart", test_bank_restart);
  guard("two-devices", test_two_devices);
  guard("unified", test_unified);
  return c.finish("test_cuda_shm");
}
