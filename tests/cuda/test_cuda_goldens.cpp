// The GPU runner against every committed transformers golden (models/*/goldens), compared exactly as
// `segpipe verify` compares (verify_golden): float32 with the CPU tolerance (1e-4 relative L2 at
// every boundary, identical greedy tokens), bfloat16 within kBf16Tolerance at every boundary (its
// greedy tokens are reported; they must match where the golden's top-2 margin is wide). Also a
// pipeline with expert banks on the GPU against the same goldens.
#include <algorithm>
#include <filesystem>

#include "gpu_test.h"
#include "orchestrator/cuda_runner.h"
#include "orchestrator/golden.h"
#include "orchestrator/run_plan.h"
#include "segments/checkpoint/config_file.h"

using namespace segpipe;
using namespace segpipe::gputest;
namespace fs = std::filesystem;

namespace {

constexpr double kF32Tolerance = 1e-4;
constexpr double kBf16Tolerance = 3e-2;  // docs/benchmarks-cuda.md: bf16 GEMM inputs, fp32 residual

RunPlan gpu_plan(const std::string& dir, const ModelConfig& cfg, const std::string& dtype, bool banks) {
  RunPlan p = default_plan(dir, cfg);
  p.max_seq = 512;
  if (banks && cfg.num_experts > 1) {
    // embed, layers (experts in banks), two banks splitting the experts, head
    std::vector<SegmentDesc> segs;
    for (auto& s : p.segments) {
      if (s.kind == SegKind::Layers) s.banks = true;
      segs.push_back(s);
    }
    int half = cfg.num_experts / 2;
    SegmentDesc b0{"bank-lo", SegKind::Experts}, b1{"bank-hi", SegKind::Experts};
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
    s.device = "cuda:0";
    s.dtype = dtype;
  }
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  if (skip_without_gpu("test_cuda_goldens")) return kSkip;
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
          auto runner = make_cuda_runner(gpu_plan(dir.string(), cfg, dtype, banks), cfg);
          for (const fs::path& gp : goldens) {
            Golden g = load_golden(gp.string(), cfg);
            double tol = dtype == "float32" ? kF32Tolerance : kBf16Tolerance;
            GoldenReport r = verify_golden(*runner, g, cfg, tol);
            double worst = 0;
            bool boundaries_ok = true, tokens_ok = true;
            std::string tokens = "-";
            for (auto& b : r.boundaries) {
              if (b.name == "generated_ids") {
                tokens_ok = b.passed;
                tokens = b.note.substr(0, b.note.find(' '));
              } else {
                worst = std::max(worst, b.rel_l2);
                boundaries_ok &= b.passed;
              }
            }
            bool ok = dtype == "float32" ? r.passed : boundaries_ok;
            c.expect(ok, "%-22s %-10s %-8s %-6s %12.3e %10s  %s%s", dir.filename().c_str(), gp.stem().c_str(),
                     dtype.c_str(), banks ? "banks" : "local", worst, tokens.c_str(), ok ? "pass" : "FAIL",
                     tokens_ok ? "" : " (tokens differ)");
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
