// The GPU runner against every committed transformers golden (models/*/goldens), compared exactly as
// `segpipe verify` compares (verify_golden): float32 with the CPU tolerance (1e-4 relative L2 at
// every boundary, identical greedy tokens), bfloat16 within kBf16Tolerance at every boundary, and its
// greedy tokens identical for the leading steps whose reference top-2 margin (summary.json's
// step_margins) is wide: more than kMarginFactor times the largest logit error that this bf16 run
// shows on the prompt (the golden's `logits` boundary). A narrower step may flip in bf16 without a
// bug, and every step after a flip sees another context, so those are reported, not required. Also a
// pipeline with expert banks on the GPU against the same goldens. Every architecture with goldens runs
// (Qwen3, Qwen3-MoE, the Omni thinker and Qwen2-MoE: q/k/v biases, no q/k norm, a shared expert beside
// the banks' routed ones).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gpu_kernels_arg.h"
#include "gpu_test.h"
#include "orchestrator/drivers/cuda_runner.h"
#include "orchestrator/debugging/golden.h"
#include "orchestrator/planning/run_plan.h"
#include "segments/model/config_file.h"

using namespace segpipe;
using namespace segpipe::gputest;
namespace fs = std::filesystem;

namespace {

constexpr double kF32Tolerance = 1e-4;
constexpr double kBf16Tolerance = 3e-2;  // docs/benchmarks-cuda.md: bf16 GEMM inputs, fp32 residual
// A top-2 gap moves by at most twice the largest logit error; twice that again leaves room for decode
// steps erring more than the prompt positions measured.
constexpr double kMarginFactor = 4.0;

// The reference's top-2 margin at each greedy step of a golden, from its directory's summary.json
// (written with the goldens by tools/goldens/make_goldens.py); empty where it does not say.
std::vector<double> step_margins(const fs::path& golden) {
  std::ifstream in(golden.parent_path() / "summary.json");
  if (!in) return {};
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object() || !j.contains("goldens") || !j["goldens"].is_array()) return {};
  for (const auto& g : j["goldens"])
    if (g.is_object() && g.value("file", "") == golden.filename().string() && g.contains("step_margins") &&
        g["step_margins"].is_array()) {
      std::vector<double> m;
      for (const auto& v : g["step_margins"])
        if (v.is_number()) m.push_back(v.get<double>());
      return m;
    }
  return {};
}

// How many leading greedy steps must give the reference's tokens in bf16: those before the first step
// whose margin is within kMarginFactor x the largest logit error (or of unknown margin).
size_t required_steps(const std::vector<double>& margins, double logit_err, size_t steps) {
  size_t n = 0;
  while (n < steps && n < margins.size() && margins[n] > kMarginFactor * logit_err) n++;
  return n;
}

RunPlan gpu_plan(const std::string& dir, const ModelConfig& cfg, const std::string& dtype, bool banks) {
  RunPlan p = default_plan(dir, cfg);
  p.max_seq = 512;
  if (banks && cfg.num_experts > 1) {
    // embed, layers (experts in banks), two banks splitting the experts, head
    std::vector<SegmentDesc> segs;
    for (auto& s : p.segments) {
      if (s.kind == SegmentKind::layers) s.banks = true;
      segs.push_back(s);
    }
    int half = cfg.num_experts / 2;
    SegmentDesc b0{"bank-lo", SegmentKind::experts}, b1{"bank-hi", SegmentKind::experts};
    b0.layer_first = b1.layer_first = 0;
    b0.layer_last = b1.layer_last = cfg.num_layers - 1;
    b0.expert_first = 0;
    b0.expert_last = half - 1;
    b1.expert_first = half;
    b1.expert_last = cfg.num_experts - 1;
    segs.insert(segs.end() - 1, b0);
    segs.insert(segs.end() - 1, b1);
    p.segments = segs;
  }
  for (auto& s : p.segments) {
    s.device = Device{Device::Type::cuda, 0};
    s.dtype = *parse_compute_dtype(dtype);
  }
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  const GpuKernels kernels = take_gpu_kernels_arg(argc, argv);
  if (const int rc = gpu_start("test_cuda_goldens"); rc >= 0) return rc;
  fs::path models = argc > 1 ? fs::path(argv[1]) : fs::path(SEGPIPE_SOURCE_DIR) / "models";
  Checks c;
  try {
    std::vector<fs::path> dirs;
    for (auto& e : fs::directory_iterator(models))
      if (fs::is_directory(e.path() / "goldens")) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    std::printf("%-22s %-10s %-8s %-6s %12s %10s  %s\n", "model", "golden", "dtype", "plan", "worst_rel_l2", "tokens",
                "verdict");
    for (const fs::path& dir : dirs) {
      ModelConfig cfg = read_model_config(dir.string());
      std::vector<fs::path> goldens;
      for (auto& e : fs::directory_iterator(dir / "goldens"))
        if (e.path().extension() == ".safetensors") goldens.push_back(e.path());
      std::sort(goldens.begin(), goldens.end());
      for (std::string dtype : {"float32", "bfloat16"})
        for (bool banks : {false, true}) {
          if (banks && (cfg.num_experts == 0 || dtype != "float32")) continue;
          CudaRunnerOptions ro;
          ro.kernels = kernels;
          auto runner = make_cuda_runner(gpu_plan(dir.string(), cfg, dtype, banks), cfg, ro);
          for (const fs::path& gp : goldens) {
            Golden g = load_golden(gp.string(), cfg);
            double tol = dtype == "float32" ? kF32Tolerance : kBf16Tolerance;
            GoldenReport r = verify_golden(*runner, g, cfg, tol);
            double worst = 0, logit_err = INFINITY;
            bool boundaries_ok = true, tokens_ok = true;
            std::string tokens = "-";
            for (auto& b : r.boundaries) {
              if (b.name == "generated_ids") {
                tokens_ok = b.passed;
                tokens = b.note.substr(0, b.note.find(' '));
              } else {
                worst = std::max(worst, b.rel_l2);
                boundaries_ok &= b.passed;
                if (b.name == "logits") logit_err = b.max_abs;
              }
            }
            // bf16: the leading wide-margin steps must match the reference token for token.
            size_t need = 0, match = 0;
            if (dtype != "float32") {
              need = required_steps(step_margins(gp), logit_err, g.generated_ids.size());
              while (match < need && match < r.generated.size() && r.generated[match] == g.generated_ids[match])
                match++;
            }
            const bool ok = dtype == "float32" ? r.passed : boundaries_ok && match == need;
            c.expect(ok, "%-22s %-10s %-8s %-6s %12.3e %10s  %s%s", dir.filename().c_str(), gp.stem().c_str(),
                     dtype.c_str(), banks ? "banks" : "local", worst, tokens.c_str(), ok ? "pass" : "FAIL",
                     tokens_ok ? ""
                     : dtype == "float32"
                         ? " (tokens differ)"
                         : (" (tokens differ; the first " + std::to_string(need) +
                            " steps, of margin > " + std::to_string(kMarginFactor) + " x logit error " +
                            std::to_string(logit_err) + ", must match: " + std::to_string(match) + " do)")
                               .c_str());
            if (!ok) print_golden_report(r, tol);
          }
        }
    }
  } catch (const std::exception& e) {
    std::printf("test_cuda_goldens: error: %s\n", e.what());
    return 1;
  }
  return c.finish("test_cuda_goldens");
}
