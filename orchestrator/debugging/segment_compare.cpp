#include "orchestrator/debugging/segment_compare.h"

#include <cstdio>
#include <cstring>

#include "orchestrator/debugging/capture.h"
#include "orchestrator/debugging/golden.h"
#include "orchestrator/drivers/media_prompt.h"
#include "orchestrator/drivers/shm_runner.h"
#include "orchestrator/planning/pipeline_loader.h"
#include "segments/core/errors.h"

namespace segpipe {

std::vector<int32_t> default_verify_prompt(const ModelConfig& cfg) {
  std::vector<int32_t> p;
  for (int i = 0; i < 12; i++) p.push_back(static_cast<int32_t>((i * 7919 + 13) % cfg.vocab));
  return p;
}

namespace {
int32_t argmax(const std::vector<float>& v, size_t off, size_t n) {
  size_t best = 0;
  for (size_t i = 1; i < n; i++)
    if (v[off + i] > v[off + best]) best = i;
  return static_cast<int32_t>(best);
}
}  // namespace

std::string inproc_baseline_problem(const RunPlan& plan) {
  bool gpu = false;
  for (const SegmentDesc& s : plan.segments) gpu |= s.device.is_cuda();
  if (!gpu || plan.segments.empty()) return "";  // all on the CPU: the CPU in-process runner
  const SegmentDesc& a = plan.segments.front();
  for (const SegmentDesc& s : plan.segments) {
    if (s.device == a.device && s.dtype == a.dtype) continue;
    return plan.source + ": verify without --golden compares the segmented run bit for bit with the same pipeline "
           "in one process, which needs every segment on one backend and device in one dtype; here segment '" + a.name +
           "' runs on " + to_string(a.device) + " (" + to_string(a.dtype) + ") and '" + s.name + "' on " +
           to_string(s.device) + " (" + to_string(s.dtype) +
           "). Check this pipeline against a golden instead: segpipe verify --pipeline " + plan.source +
           " --golden FILE";
  }
  return "";
}

bool compare_segmented_with_inproc(const LoadedPlan& lp, const std::vector<int32_t>& prompt, int new_tokens,
                                   nlohmann::json& report, const std::vector<MediaInput>& media) {
  if (std::string why = inproc_baseline_problem(lp.plan); !why.empty()) throw InputError(why);
  RunPlan base = lp.plan, seg = lp.plan;
  base.inproc = true;
  seg.inproc = false;
  const int64_t T = static_cast<int64_t>(prompt.size());
  ShmOptions so;
  so.capture_tokens = T;
  // make_runner: the in-process baseline runs where the plan's segments run (CPU, or one GPU); the
  // segmented run one process per segment, on the hosts the plan names (made first: a run across hosts
  // starts the command again under the launcher there).
  auto shm = make_runner(seg, so);
  auto inproc = make_runner(base, so);
  Capture a, b;
  std::vector<float> la, lb;
  // With media: the encoders' rows are boundaries too (compared below), and decoding goes on at the
  // prompt's rope delta.
  std::vector<std::pair<std::string, std::pair<std::vector<float>, std::vector<float>>>> encoded;
  StepMedia decode_media;
  if (media.empty()) {
    inproc->step(prompt.data(), T, 0, true, &a, la);
    shm->step(prompt.data(), T, 0, true, &b, lb);
  } else {
    const MediaPrompt mp{prompt, media};
    const MediaPrefill pa = prefill_media_prompt(*inproc, lp.cfg, lp.plan.model_dir, mp, true, &a, la);
    const MediaPrefill pb = prefill_media_prompt(*shm, lp.cfg, lp.plan.model_dir, mp, true, &b, lb);
    for (size_t i = 0; i < media.size(); i++)
      encoded.push_back({std::string(to_string(media[i].encoder)) + "." + std::to_string(i), {pa.encoded[i].rows, pb.encoded[i].rows}});
    decode_media.rope_delta = pa.rope_delta;
  }
  bool ok = true;
  std::printf("segmented (%zu processes) vs in-process: %s\n", lp.plan.segments.size(), lp.plan.source.c_str());
  std::printf("  %-28s %12s %12s  %s\n", "boundary", "max_abs", "rel_l2", "verdict");
  report["boundaries"] = nlohmann::json::array();
  for (const auto& [name, rows] : encoded) {
    BoundaryResult r;
    r.name = name;
    if (rows.first.size() != rows.second.size()) {
      r.passed = false;
      r.note = "sizes differ";
    } else {
      compare_floats(rows.second.data(), rows.first.data(), rows.first.size(), r);
      r.passed = r.bitwise;
    }
    ok &= r.passed;
    std::printf("  %-28s %12.3e %12.3e  %s\n", name.c_str(), r.max_abs, r.rel_l2, r.passed ? "identical" : "DIFFERS");
    report["boundaries"].push_back({{"name", name}, {"max_abs", r.max_abs}, {"rel_l2", r.rel_l2},
                                    {"bitwise", r.bitwise}, {"passed", r.passed}, {"note", r.note}});
  }
  for (const std::string& name : a.order) {
    BoundaryResult r;
    r.name = name;
    auto it = b.tensors.find(name);
    if (it == b.tensors.end() || it->second.size() != a.tensors[name].size()) {
      r.passed = false;
      r.note = "missing from the segmented run";
    } else {
      compare_floats(it->second.data(), a.tensors[name].data(), it->second.size(), r);
      r.passed = r.bitwise;
    }
    ok &= r.passed;
    std::printf("  %-28s %12.3e %12.3e  %s\n", name.c_str(), r.max_abs, r.rel_l2, r.passed ? "identical" : "DIFFERS");
    report["boundaries"].push_back({{"name", name}, {"max_abs", r.max_abs}, {"rel_l2", r.rel_l2},
                                    {"bitwise", r.bitwise}, {"passed", r.passed}, {"note", r.note}});
  }
  // Router choices too (they drive which banks run).
  for (auto& [layer, ra] : a.routes) {
    auto it = b.routes.find(layer);
    bool same = it != b.routes.end() && it->second.experts == ra.experts &&
                std::memcmp(it->second.weights.data(), ra.weights.data(), ra.weights.size() * 4) == 0;
    ok &= same;
    std::string name = "layers." + std::to_string(layer) + ".routes";
    std::printf("  %-28s %12s %12s  %s\n", name.c_str(), "-", "-", same ? "identical" : "DIFFERS");
    report["boundaries"].push_back({{"name", name}, {"bitwise", same}, {"passed", same}});
  }
  // Greedy continuation: every step's logits and token.
  const size_t V = static_cast<size_t>(inproc->vocab());
  int32_t na = argmax(la, la.size() - V, V), nb = argmax(lb, lb.size() - V, V);
  std::vector<int32_t> ga{na}, gb{nb};
  bool steps_same = std::memcmp(la.data() + la.size() - V, lb.data() + lb.size() - V, V * 4) == 0;
  for (int n = 1; n < new_tokens; n++) {
    if (decode_media.empty()) {
      inproc->step(&na, 1, T + n - 1, false, nullptr, la);
      shm->step(&nb, 1, T + n - 1, false, nullptr, lb);
    } else {
      inproc->step_media(&na, 1, T + n - 1, false, nullptr, la, decode_media);
      shm->step_media(&nb, 1, T + n - 1, false, nullptr, lb, decode_media);
    }
    steps_same &= la.size() == lb.size() && std::memcmp(la.data(), lb.data(), la.size() * 4) == 0;
    na = argmax(la, 0, V);
    nb = argmax(lb, 0, V);
    ga.push_back(na);
    gb.push_back(nb);
  }
  bool gen_same = ga == gb && steps_same;
  ok &= gen_same;
  std::printf("  %-28s %12s %12s  %s (%d tokens, decode logits %s)\n", "generated_ids", "-", "-",
              gen_same ? "identical" : "DIFFERS", new_tokens, steps_same ? "bitwise equal" : "differ");
  report["boundaries"].push_back({{"name", "generated_ids"}, {"passed", gen_same}, {"inproc", ga}, {"segmented", gb}});
  report["segments"] = segment_reports_json(shm->reports());
  return ok;
}

}  // namespace segpipe
