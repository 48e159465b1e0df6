// segpipe_compare_cuda: the full-size GPU path against transformers on the same synthetic weights.
//
// hf_bench.py --golden-out writes what transformers computes in bf16 for one prompt on the synthetic
// full-size weights (made on the GPU from segpipe's formula); this tool runs the same prompt through
// the GPU runner that `segpipe generate` uses (CudaRunner, synthetic weights of the same preset, the
// same dtype) in one prefill with every boundary observed, and reports, per decoder layer, the relative
// L2 error of the layer's output and the agreement of the router's top-k expert sets, and over every
// prompt position the agreement of the top-1 token (teacher-forced: each position sees the prompt's
// tokens, not our own choices).
//
// usage: segpipe_compare_cuda --golden FILE [--preset NAME] [--layers N] [--dtype bfloat16|float32] [--json FILE]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "orchestrator/debugging/golden.h"
#include "orchestrator/drivers/cuda_runner.h"
#include "orchestrator/planning/run_plan.h"
#include "segments/core/errors.h"
#include "segments/model/synthetic.h"

namespace segpipe {
namespace {

// Keeps every boundary of one step, by name.
struct Capture : BoundaryObserver {
  std::map<std::string, std::vector<float>> t;
  void on_tensor(const Boundary& b, const float* data, int64_t rows, int64_t cols) override {
    t[b.name()].assign(data, data + rows * cols);
  }
};

int argmax(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++)
    if (v[i] > v[best]) best = i;
  return static_cast<int>(best);
}

std::set<int> top_k(const float* v, int64_t n, int k) {
  std::vector<int> idx(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) idx[size_t(i)] = i;
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int a, int b) { return v[a] != v[b] ? v[a] > v[b] : a < b; });
  return {idx.begin(), idx.begin() + k};
}

int run(int argc, char** argv) {
  std::string preset = "qwen3-omni-30b-a3b-thinker", dtype = "bfloat16", golden_path, json_out;
  int num_layers = 0;  // the preset's; fewer where a float32 reference must fit the card
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw InputError(a + " needs a value");
      return argv[++i];
    };
    if (a == "--preset") preset = next();
    else if (a == "--dtype") dtype = next();
    else if (a == "--golden") golden_path = next();
    else if (a == "--json") json_out = next();
    else if (a == "--layers") num_layers = std::atoi(next().c_str());
    else throw InputError("unknown option '" + a + "' (usage: --golden FILE [--preset NAME] [--dtype D] [--json FILE])");
  }
  if (golden_path.empty()) throw InputError("--golden FILE is required");
  MakeModelOptions mo;
  mo.preset = preset;
  if (num_layers > 0) mo.num_layers = num_layers;
  const ModelConfig cfg = parse_model_config(synthetic_config(mo), "preset " + preset);
  const Golden g = load_golden(golden_path, cfg);
  const int64_t T = static_cast<int64_t>(g.input_ids.size()), H = cfg.hidden, E = cfg.num_experts, V = cfg.vocab;

  RunPlan plan = default_plan("synthetic:" + preset, cfg);
  plan.max_seq = std::max<int64_t>(4096, T + 64);
  const auto dt = parse_compute_dtype(dtype);
  if (!dt) throw InputError("--dtype: '" + dtype + "' (bfloat16 or float32)");
  for (auto& s : plan.segments) s.device = Device{Device::Type::cuda, 0}, s.dtype = *dt;
  CudaRunnerOptions ro;
  ro.synthetic = true;
  auto runner = make_cuda_runner(plan, cfg, ro);
  Capture cap;
  std::vector<float> logits;
  runner->step(g.input_ids.data(), T, 0, true, &cap, logits);
  cap.t["logits"] = logits;

  nlohmann::json layers = nlohmann::json::array();
  std::printf("== segpipe (%s, %s) vs %s ==\n", runner->device_description().c_str(), dtype.c_str(),
              g.metadata.count("source") ? g.metadata.at("source").c_str() : "?");
  std::printf("%-7s %12s %12s %14s\n", "layer", "rel_l2", "max_abs", "router top-k");
  double worst_rel = 0;
  int64_t topk_same = 0, topk_all = 0;
  for (int l = 0; l < cfg.num_layers; l++) {
    const std::string on = "layers." + std::to_string(l) + ".output", rn = "layers." + std::to_string(l) + ".router_logits";
    nlohmann::json row{{"layer", l}};
    if (g.tensors.count(on) && cap.t.count(on)) {
      BoundaryResult r;
      compare_floats(cap.t[on].data(), g.tensors.at(on).data(), size_t(T * H), r);
      row["rel_l2"] = r.rel_l2;
      row["max_abs"] = r.max_abs;
      worst_rel = std::max(worst_rel, r.rel_l2);
    }
    int same = 0;
    if (g.tensors.count(rn) && cap.t.count(rn)) {
      for (int64_t t = 0; t < T; t++)
        same += top_k(cap.t[rn].data() + t * E, E, cfg.top_k) == top_k(g.tensors.at(rn).data() + t * E, E, cfg.top_k);
      row["router_topk_same"] = same;
      topk_same += same;
      topk_all += T;
    }
    std::printf("%-7d %12.3e %12.3e %8d / %lld\n", l, row.value("rel_l2", 0.0), row.value("max_abs", 0.0), same,
                static_cast<long long>(T));
    layers.push_back(row);
  }
  BoundaryResult lr;
  compare_floats(logits.data(), g.tensors.at("logits").data(), size_t(T * V), lr);
  int top1 = 0;
  for (int64_t t = 0; t < T; t++) top1 += argmax(logits.data() + t * V, V) == argmax(g.tensors.at("logits").data() + t * V, V);
  std::printf("logits rel_l2 %.3e, max_abs %.3e; teacher-forced top-1 agreement %d / %lld (%.2f%%); router top-k sets "
              "%lld / %lld (%.2f%%); worst layer rel_l2 %.3e\n",
              lr.rel_l2, lr.max_abs, top1, static_cast<long long>(T), 100.0 * top1 / double(T),
              static_cast<long long>(topk_same), static_cast<long long>(topk_all),
              topk_all ? 100.0 * double(topk_same) / double(topk_all) : 0.0, worst_rel);
  if (!json_out.empty()) {
    nlohmann::json j{{"preset", preset},          {"dtype", dtype},           {"device", runner->device_description()},
                     {"golden_source", g.metadata.count("source") ? g.metadata.at("source") : ""},
                     {"tokens", T},               {"layers", layers},         {"logits_rel_l2", lr.rel_l2},
                     {"logits_max_abs", lr.max_abs}, {"top1_agree", top1},    {"router_topk_same", topk_same},
                     {"router_topk_total", topk_all}, {"worst_layer_rel_l2", worst_rel}};
    std::ofstream(json_out) << j.dump(1) << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace segpipe

int main(int argc, char** argv) {
  try {
    return segpipe::run(argc, argv);
  } catch (const segpipe::InputError& e) {
    std::fprintf(stderr, "segpipe_compare_cuda: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "segpipe_compare_cuda: %s\n", e.what());
    return 3;
  }
}
