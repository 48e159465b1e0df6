// GPU segments under transport: shm (one process per segment, workers/cuda_worker.h), on a GPU:
//   1. every segment on the GPU, the layers cut in groups: each boundary of the prefill, the router
//      choices and 8 greedy decode steps (logits) bit-identical to the same plan run in-process on
//      the GPU (CudaRunner); float32 and bfloat16, MoE and dense;
//   2. mixed CPU/GPU pipelines (the shared arena registered for the GPU where they meet) against the
//      committed transformers goldens in float32, exactly as `segpipe verify` compares;
//   3. a GPU layers worker killed mid-generation: with restart, the run continues bit for bit (the
//      KV cache lives in the orchestrator's device arena); without, a RuntimeFailure naming it.
// Needs the segpipe command's libraries (workers, shm): it is its own worker executable
// (`test_cuda_shm __worker ...`). Exits 77 where no GPU is visible.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "gpu_test.h"
#include "orchestrator/capture.h"
#include "orchestrator/cuda_ipc.h"
#include "orchestrator/cuda_mps.h"
#include "orchestrator/cuda_runner.h"
#include "orchestrator/golden.h"
#include "orchestrator/run_plan.h"
#include "orchestrator/shm_runner.h"
#include "segments/checkpoint/config_file.h"
#include "workers/worker_main.h"

using namespace segpipe;
using namespace segpipe::gputest;
namespace fs = std::filesystem;

namespace {

std::string g_source = SEGPIPE_SOURCE_DIR;

struct Seg {
  const char* name;
  SegKind kind;
  int l0 = -1, l1 = -1;
  const char* device = "cuda:0";
};

RunPlan make_plan(const std::string& model, const std::vector<Seg>& segs, const std::string& dtype) {
  RunPlan p;
  p.model_dir = g_source + "/models/" + model;
  p.tokenizer_dir = p.model_dir;
  p.source = "test plan (" + model + ")";
  p.inproc = false;
  p.max_seq = 256;
  p.threads = 2;
  for (const Seg& s : segs) {
    SegmentDesc d{s.name, s.kind};
    d.layer_first = s.l0;
    d.layer_last = s.l1;
    d.device = s.device;
    d.dtype = std::string(s.device) == "cpu" ? "float32" : dtype;
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

void test_bit_identical(Checks& c) {
  struct Case {
    const char* model;
    const char* dtype;
    std::vector<Seg> segs;
  };
  std::vector<Case> cases = {
      {"tiny-qwen3-moe", "float32",
       {{"embed", SegKind::Embeddings}, {"layers-a", SegKind::Layers, 0, 1}, {"layers-b", SegKind::Layers, 2, 4},
        {"head", SegKind::LmHead}}},
      {"tiny-qwen3-moe", "bfloat16",
       {{"embed", SegKind::Embeddings}, {"layers-a", SegKind::Layers, 0, 0}, {"layers-b", SegKind::Layers, 1, 3},
        {"layers-c", SegKind::Layers, 4, 4}, {"head", SegKind::LmHead}}},
      {"tiny-qwen3-dense", "float32",
       {{"embed", SegKind::Embeddings}, {"layer-0", SegKind::Layers, 0, 0}, {"layer-1", SegKind::Layers, 1, 2},
        {"head", SegKind::LmHead}}},
      {"tiny-qwen3-omni", "bfloat16",
       {{"embed", SegKind::Embeddings}, {"layers-a", SegKind::Layers, 0, 1}, {"layers-b", SegKind::Layers, 2, -2},
        {"head", SegKind::LmHead}}},
  };
  for (Case& cs : cases) {
    const std::string dir = g_source + "/models/" + cs.model;
    ModelConfig cfg = read_model_config(dir);
    for (auto& s : cs.segs)
      if (s.l1 == -2) s.l1 = cfg.num_layers - 1;
    RunPlan plan = make_plan(cs.model, cs.segs, cs.dtype);
    RunPlan inproc = plan;
    inproc.inproc = true;
    auto prompt = prompt_for(cfg, 12);
    const int steps = 8;
    Capture ca, cb;
    std::vector<std::vector<float>> la, lb;
    {
      auto ref = make_cuda_runner(inproc, cfg);
      la = run(*ref, prompt, steps, &ca);
    }
    ShmOptions so;
    so.capture_tokens = static_cast<int64_t>(prompt.size());
    auto shm = make_shm_runner_cuda(plan, so, {});
    lb = run(*shm, prompt, steps, &cb);
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
             "shm GPU vs in-process GPU %s %s, %zu processes: %d/%d boundaries+routes bit-identical%s%s, prefill + %d "
             "decode logits %s",
             cs.model, cs.dtype, plan.segments.size(), n - differ, n, first.empty() ? "" : ", first differing: ",
             first.c_str(), steps, logits_same ? "bit-identical" : "DIFFER");
  }
}

void test_mixed_goldens(Checks& c) {
  // cpu/gpu alternation: every kind of meeting (host arena both ways, and one GPU-GPU device slot)
  std::vector<std::vector<Seg>> pipes = {
      {{"embed", SegKind::Embeddings, -1, -1, "cpu"}, {"layers-a", SegKind::Layers, 0, 1},
       {"layers-b", SegKind::Layers, 2, 3, "cpu"}, {"layers-c", SegKind::Layers, 4, -2}, {"head", SegKind::LmHead, -1, -1, "cpu"}},
      {{"embed", SegKind::Embeddings}, {"layers-a", SegKind::Layers, 0, 1}, {"layers-b", SegKind::Layers, 2, -2, "cpu"},
       {"head", SegKind::LmHead}},
  };
  for (const char* model : {"tiny-qwen3-moe", "tiny-qwen3-dense"}) {
    const std::string dir = g_source + "/models/" + model;
    ModelConfig cfg = read_model_config(dir);
    for (size_t pi = 0; pi < pipes.size(); pi++) {
      auto segs = pipes[pi];
      for (auto& s : segs) {
        if (s.l1 == -2) s.l1 = cfg.num_layers - 1;
        if (s.l0 >= cfg.num_layers) s.l0 = cfg.num_layers - 1;
        if (s.l1 >= cfg.num_layers) s.l1 = cfg.num_layers - 1;
      }
      // drop segments that became empty or overlap on small models
      std::vector<Seg> ok;
      int next = 0;
      for (auto& s : segs) {
        if (s.kind == SegKind::Layers) {
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
        c.expect(r.passed, "mixed %s [%s] golden %s: worst rel_l2 %.2e, %s", model, layout.c_str(),
                 fs::path(r.golden).filename().c_str(), worst, r.passed ? "passed" : "FAILED");
      }
    }
  }
}

void test_restart(Checks& c) {
  const std::string model = "tiny-qwen3-moe";
  ModelConfig cfg = read_model_config(g_source + "/models/" + model);
  std::vector<Seg> segs = {{"embed", SegKind::Embeddings}, {"layers-a", SegKind::Layers, 0, 1},
                           {"layers-b", SegKind::Layers, 2, 4}, {"head", SegKind::LmHead}};
  RunPlan plan = make_plan(model, segs, "bfloat16");
  plan.timeout_ms = 4000;
  auto prompt = prompt_for(cfg, 10);
  std::vector<std::vector<float>> clean, restarted;
  ShmOptions so;
  so.capture_tokens = static_cast<int64_t>(prompt.size());  // the prefill asks for every position's logits
  {
    auto r = make_shm_runner_cuda(plan, so, {});
    clean = run(*r, prompt, 8, nullptr);
  }
  // SIGKILL at layers-b's 5th step (the 4th decode step, after its graph was captured).
  setenv("SEGPIPE_FAULT", "layers-b:step:5:9", 1);
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
  c.expect(same, "GPU layers worker killed at its 5th step, restart: the 9 steps' logits %s the uninterrupted run",
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
  bool named = msg.find("layers-b") != std::string::npos && msg.find("not a RuntimeFailure") == std::string::npos;
  c.expect(named, "without restart: RuntimeFailure (exit 3) naming the segment: \"%s\"", msg.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == kWorkerCommand) {
    try {
      return worker_main(std::vector<std::string>(argv + 2, argv + argc));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "worker: %s\n", e.what());
      return 2;
    }
  }
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
  if (skip_without_gpu("test_cuda_shm")) return kSkip;
  Checks c;
  std::string only = std::getenv("SEGPIPE_TEST_ONLY") ? std::getenv("SEGPIPE_TEST_ONLY") : "";
  auto guard = [&](const char* name, void (*fn)(Checks&)) {
    if (!only.empty() && only != name) return;
    try {
      fn(c);
    } catch (const std::exception& e) {
      c.expect(false, "%s: error: %s", name, e.what());
    }
  };
  guard("identical", test_bit_identical);
  guard("mixed", test_mixed_goldens);
  guard("restart", test_restart);
  return c.finish("test_cuda_shm");
}
