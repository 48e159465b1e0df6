#include "orchestrator/debugging/bisect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "orchestrator/debugging/capture.h"
#include "orchestrator/debugging/debug_common.h"
#include "orchestrator/debugging/golden.h"
#include "orchestrator/drivers/chain_driver.h"
#include "orchestrator/drivers/inproc_transport.h"
#include "orchestrator/drivers/media_prompt.h"
#include "orchestrator/drivers/segment_set.h"
#include "orchestrator/drivers/shm_runner.h"
#include "segments/core/errors.h"

namespace segpipe {

using nlohmann::json;

namespace {

json num(double x) { return std::isfinite(x) ? json(x) : json("inf"); }

struct Row {
  std::string boundary;
  double max_abs = 0, rel_l2 = 0;
  bool passed = true;
  std::string note;
};

void print_rows(const std::vector<Row>& rows, size_t first_bad, const RunPlan& plan) {
  std::printf("  %-28s %-12s %12s %12s  %s\n", "boundary", "segment", "max_abs", "rel_l2", "verdict");
  for (size_t i = 0; i < rows.size(); i++) {
    const Row& r = rows[i];
    // Show everything up to the divergence and a few rows after it.
    if (first_bad < rows.size() && i > first_bad + 3 && i + 1 < rows.size()) {
      if (i == first_bad + 4) std::printf("  ... (%zu more boundaries)\n", rows.size() - i - 1);
      continue;
    }
    std::printf("  %-28s %-12s %12.3e %12.3e  %s%s%s%s\n", r.boundary.c_str(), segment_of_boundary(plan, r.boundary).c_str(),
                r.max_abs, r.rel_l2, r.passed ? "ok" : "DIVERGES", r.note.empty() ? "" : "  ", r.note.c_str(),
                i == first_bad ? "  <== first divergence" : "");
  }
}

// The prompt (with its media, if any) through `plan` in this process: its boundaries, logits and bank
// calls. With media, each encoder's rows are returned too (in prompt order).
std::vector<std::vector<float>> run_inproc(const RunPlan& plan, const ModelConfig& cfg, const std::vector<int32_t>& prompt,
                                           const std::vector<MediaInput>& media, Capture* obs, std::vector<float>& logits,
                                           std::vector<BankCall>* calls) {
  SegmentSet set(plan, cfg);
  auto runner = make_chain_runner(plan, std::make_unique<InprocTransport>(plan, cfg, set, calls));
  const int64_t T = static_cast<int64_t>(prompt.size());
  std::vector<std::vector<float>> rows;
  if (media.empty()) {
    runner->step(prompt.data(), T, 0, obs != nullptr, obs, logits);
  } else {
    MediaPrefill p = prefill_media_prompt(*runner, cfg, plan.model_dir, MediaPrompt{prompt, media}, obs != nullptr, obs, logits);
    for (EncodedMedia& e : p.encoded) rows.push_back(std::move(e.rows));
  }
  return rows;
}

// Which bank, which experts, when the first divergent boundary is a banked layer's output.
json follow_into_banks(const LoadedPlan& cand, const RunPlan& ref_plan, const ModelConfig& cfg,
                       const std::vector<int32_t>& prompt, const std::vector<MediaInput>& media, int layer) {
  std::vector<BankCall> ca, cb;
  std::vector<float> la, lb;
  run_inproc(cand.plan, cfg, prompt, media, nullptr, la, &ca);
  run_inproc(ref_plan, cfg, prompt, media, nullptr, lb, &cb);
  const BankCall *x = nullptr, *y = nullptr;
  for (auto& c : ca)
    if (c.layer == layer) x = &c;
  for (auto& c : cb)
    if (c.layer == layer) y = &c;
  json j;
  if (!x || !y) return j;
  const int64_t H = cfg.hidden;
  if (std::memcmp(x->x.data(), y->x.data(), x->x.size() * 4) != 0 || x->experts != y->experts) {
    j["verdict"] = "the request to the banks already differs: attention or the post-attention norm of the layer";
    return j;
  }
  for (size_t i = 0; i < x->answers.size() && i < y->answers.size(); i++) {
    const auto& p = x->answers[i];
    const auto& q = y->answers[i];
    std::vector<int> bad;
    double mx = 0;
    for (size_t s = 0; s < p.owned.size(); s++) {
      if (!p.owned[s]) continue;
      bool differ = false;
      for (int64_t c = 0; c < H; c++) {
        float u = p.slots[s * H + c], v = q.slots[s * H + c];
        if (std::memcmp(&u, &v, 4) != 0) {
          differ = true;
          mx = std::max(mx, std::isnan(u) || std::isnan(v) ? INFINITY : std::fabs(static_cast<double>(u) - v));
        }
      }
      int e = x->experts[s];
      if (differ && std::find(bad.begin(), bad.end(), e) == bad.end()) bad.push_back(e);
    }
    if (!bad.empty()) {
      std::sort(bad.begin(), bad.end());
      j["bank"] = p.bank;
      j["experts"] = bad;
      j["max_abs"] = num(mx);
      j["verdict"] = "bank '" + p.bank + "' answers differently for experts " + json(bad).dump();
      return j;
    }
  }
  j["verdict"] = "the in-process runs agree inside the banks: the difference arises on the segmented path";
  return j;
}

}  // namespace

bool run_bisect(const LoadedPlan& lp, const BisectOptions& opt, json& report) {
  const ModelConfig& cfg = lp.cfg;
  std::vector<Row> rows;
  std::string against;
  std::vector<int32_t> prompt = opt.prompt;
  std::optional<LoadedPlan> ref;
  if (!opt.goldens.empty()) {
    if (opt.goldens.size() != 1) throw InputError("verify --bisect: give one --golden");
    Golden g = load_golden(opt.goldens[0], cfg);
    prompt = g.input_ids;
    ShmOptions so;
    so.capture_tokens = static_cast<int64_t>(prompt.size());
    auto runner = make_runner(lp.plan, so);
    GoldenReport gr = verify_golden(*runner, g, cfg, opt.tolerance);
    for (auto& b : gr.boundaries) {
      if (b.name == "generated_ids") continue;  // a consequence, not a place
      rows.push_back({b.name, b.max_abs, b.rel_l2, b.passed, b.note});
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.0e", opt.tolerance);
    against = "golden " + g.path + " (relative L2 <= " + buf + ")";
  } else {
    RunPlan ref_plan = lp.plan;
    if (opt.reference) {
      ref.emplace(load_pipeline_plan(*opt.reference));
      const ModelConfig& rc = ref->cfg;
      if (rc.hidden != cfg.hidden || rc.num_layers != cfg.num_layers || rc.vocab != cfg.vocab ||
          rc.num_experts != cfg.num_experts || rc.top_k != cfg.top_k)
        throw InputError(*opt.reference + ": the reference model has another architecture than " + lp.plan.source);
      ref_plan = ref->plan;
    }
    ref_plan.inproc = true;
    const int64_t T = static_cast<int64_t>(prompt.size());
    ShmOptions so;
    so.capture_tokens = T;
    Capture a, b;
    std::vector<float> la, lb;
    // With media, each encoder's rows come first: the walk starts where the prompt's numbers start.
    std::vector<std::vector<float>> ea, eb;
    {
      auto cand = make_runner(lp.plan, so);
      if (opt.media.empty()) {
        cand->step(prompt.data(), T, 0, true, &a, la);
      } else {
        MediaPrefill p = prefill_media_prompt(*cand, cfg, lp.plan.model_dir, MediaPrompt{prompt, opt.media}, true, &a, la);
        for (EncodedMedia& e : p.encoded) ea.push_back(std::move(e.rows));
      }
    }
    eb = run_inproc(ref_plan, cfg, prompt, opt.media, &b, lb, nullptr);
    for (size_t j = 0; j < opt.media.size(); j++) {
      Row r{};
      r.boundary = std::string(to_string(opt.media[j].encoder)) + "." + std::to_string(j);
      BoundaryResult br;
      if (ea[j].size() != eb[j].size()) {
        r.passed = false;
        r.note = "row counts differ";
      } else {
        compare_floats(ea[j].data(), eb[j].data(), ea[j].size(), br);
        r.max_abs = br.max_abs;
        r.rel_l2 = br.rel_l2;
        r.passed = br.bitwise;
      }
      rows.push_back(r);
    }
    std::vector<std::string> order = {"embeddings"};
    for (int l = 0; l < cfg.num_layers; l++) {
      if (cfg.is_moe_layer(l)) {
        order.push_back("layers." + std::to_string(l) + ".router_logits");
        order.push_back("layers." + std::to_string(l) + ".routes");
      }
      order.push_back("layers." + std::to_string(l) + ".output");
    }
    order.push_back("norm");
    order.push_back("logits");
    for (auto& n : order) {
      Row r{};
      r.boundary = n;
      if (n.size() > 7 && n.compare(n.size() - 7, 7, ".routes") == 0) {
        int l = layer_of_boundary(n);
        const auto &x = a.routes.at(l), &y = b.routes.at(l);
        int64_t differ = 0;
        for (size_t i = 0; i < x.experts.size(); i++) differ += x.experts[i] != y.experts[i] || std::memcmp(&x.weights[i], &y.weights[i], 4) != 0;
        r.passed = differ == 0;
        r.max_abs = r.rel_l2 = 0;
        if (differ) r.note = std::to_string(differ) + " (token, slot) choices differ";
      } else {
        const auto &x = a.tensors.at(n), &y = b.tensors.at(n);
        BoundaryResult br;
        compare_floats(x.data(), y.data(), x.size(), br);
        r.max_abs = br.max_abs;
        r.rel_l2 = br.rel_l2;
        r.passed = br.bitwise;
      }
      rows.push_back(r);
    }
    against = std::string("in-process run of ") + (opt.reference ? *opt.reference : lp.plan.source) + " (bit for bit)";
  }

  size_t first = rows.size();
  for (size_t i = 0; i < rows.size(); i++)
    if (!rows[i].passed) {
      first = i;
      break;
    }
  std::printf("bisect: %s against the %s\n", lp.plan.source.c_str(), against.c_str());
  print_rows(rows, first, lp.plan);
  json j{{"against", against}, {"diverged", first < rows.size()}};
  json jr = json::array();
  for (auto& r : rows)
    jr.push_back({{"boundary", r.boundary}, {"segment", segment_of_boundary(lp.plan, r.boundary)}, {"max_abs", num(r.max_abs)},
                  {"rel_l2", num(r.rel_l2)}, {"passed", r.passed}, {"note", r.note}});
  j["boundaries"] = jr;
  if (first == rows.size()) {
    std::printf("bisect: no divergence (%zu boundaries)\n", rows.size());
    report["bisect"] = j;
    return true;
  }
  const Row& r = rows[first];
  std::string seg = segment_of_boundary(lp.plan, r.boundary);
  int layer = layer_of_boundary(r.boundary);
  j["first"] = {{"boundary", r.boundary}, {"segment", seg}, {"layer", layer}, {"max_abs", num(r.max_abs)},
                {"rel_l2", num(r.rel_l2)}, {"note", r.note}};
  std::string kind;
  for (auto& s : lp.plan.segments)
    if (s.name == seg) kind = to_string(s.kind);
  std::printf("bisect: first divergence in segment '%s' (%s)%s at %s: max_abs %.3e, rel_l2 %.3e%s%s\n", seg.c_str(),
              kind.c_str(), layer >= 0 ? (", layer " + std::to_string(layer)).c_str() : "", r.boundary.c_str(), r.max_abs,
              r.rel_l2, r.note.empty() ? "" : "; ", r.note.c_str());
  // A banked MoE layer whose router agreed: look inside the banks (in-process reference only).
  bool banked = false;
  for (auto& s : lp.plan.segments)
    if (s.name == seg && s.kind == SegmentKind::layers && s.banks) banked = true;
  if (banked && layer >= 0 && cfg.is_moe_layer(layer) && opt.goldens.empty() &&
      r.boundary == "layers." + std::to_string(layer) + ".output") {
    RunPlan ref_plan = ref ? ref->plan : lp.plan;
    json b = follow_into_banks(lp, ref_plan, cfg, prompt, opt.media, layer);
    if (!b.is_null()) {
      j["first"]["banks"] = b;
      std::printf("bisect: inside layer %d: %s\n", layer, b.value("verdict", std::string()).c_str());
    }
  } else if (banked && layer >= 0 && cfg.is_moe_layer(layer) && !opt.goldens.empty()) {
    std::printf("bisect: layer %d's experts live in banks; a golden holds no bank traffic, so run with --reference "
                "PIPELINE (the original checkpoint) to name the bank and experts\n", layer);
  }
  report["bisect"] = j;
  return false;
}

}  // namespace segpipe
