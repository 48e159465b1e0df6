#include "orchestrator/debugging/golden.h"

#include <algorithm>
#include <filesystem>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <optional>

#include "orchestrator/debugging/capture.h"
#include "segments/checkpoint/safetensors.h"
#include "segments/core/errors.h"

namespace segpipe {

namespace {

// "layers.{i}.output" / "layers.{i}.router_logits" -> (i, is_output); anything else -> nullopt.
// Parsed by hand: a regex recurses per character, and a hostile name must not take the stack.
struct LayerName {
  uint64_t layer;
  bool output;
};
std::optional<LayerName> parse_layer_name(const std::string& name) {
  const std::string pre = "layers.";
  if (name.compare(0, pre.size(), pre) != 0) return std::nullopt;
  size_t i = pre.size(), j = i;
  uint64_t v = 0;
  bool big = false;
  while (j < name.size() && name[j] >= '0' && name[j] <= '9') {
    if (v > (1ull << 40)) big = true;  // far beyond any model; keep it from wrapping
    v = big ? v : v * 10 + static_cast<uint64_t>(name[j] - '0');
    j++;
  }
  if (j == i || (j - i > 1 && name[i] == '0')) return std::nullopt;
  std::string rest = name.substr(j);
  if (rest != ".output" && rest != ".router_logits") return std::nullopt;
  return LayerName{big ? UINT64_MAX : v, rest == ".output"};
}

std::vector<int32_t> read_ids(SafetensorsFile& f, const std::string& name) {
  TensorView v = f.view(name);
  if (v.dtype != DType::I64 || v.shape.size() != 1)
    throw InputError(f.path() + ": tensor '" + name + "' must be I64 of shape [N], got " + dtype_name(v.dtype) + " " +
                     shape_str(v.shape));
  std::vector<int32_t> out(static_cast<size_t>(v.numel()));
  for (size_t i = 0; i < out.size(); i++) {
    int64_t x;
    std::memcpy(&x, static_cast<const char*>(v.data) + i * 8, 8);
    if (x < 0 || x > 0x7fffffff) throw InputError(f.path() + ": tensor '" + name + "' holds an invalid token id");
    out[i] = static_cast<int32_t>(x);
  }
  return out;
}

}  // namespace

Golden load_golden(const std::string& path, const ModelConfig& cfg) {
  auto f = SafetensorsFile::open(path);
  Golden g;
  g.path = path;
  g.metadata = f->header().metadata;
  auto fmt = g.metadata.find("format");
  if (fmt == g.metadata.end() || fmt->second != "segpipe-golden/1")
    throw InputError(path + ": __metadata__.format must be 'segpipe-golden/1'");
  auto mt = g.metadata.find("model_type");
  if (mt != g.metadata.end() && mt->second != cfg.model_type)
    throw InputError(path + ": golden is for model_type '" + mt->second + "' but the model is '" + cfg.model_type + "'");
  if (!f->has("input_ids")) throw InputError(path + ": missing tensor 'input_ids'");
  g.input_ids = read_ids(*f, "input_ids");
  const int64_t T = static_cast<int64_t>(g.input_ids.size());
  if (T == 0) throw InputError(path + ": input_ids is empty");
  for (int32_t id : g.input_ids)
    if (id >= cfg.vocab)
      throw InputError(path + ": input_ids holds token " + std::to_string(id) + ", outside the model's vocabulary (" +
                       std::to_string(cfg.vocab) + ")");
  for (auto& [name, e] : f->header().tensors) {
    if (name == "input_ids" || is_media_golden_tensor(name)) continue;
    if (name == "generated_ids") {
      g.generated_ids = read_ids(*f, name);
      g.has_generated = true;
      continue;
    }
    std::vector<int64_t> want;
    std::optional<LayerName> ln;
    if (name == "embeddings" || name == "norm") {
      want = {T, cfg.hidden};
    } else if (name == "logits") {
      want = {T, cfg.vocab};
    } else if ((ln = parse_layer_name(name))) {
      if (ln->layer >= static_cast<uint64_t>(cfg.num_layers))
        throw InputError(path + ": tensor '" + name.substr(0, 80) + "' names a layer the model does not have (" +
                         std::to_string(cfg.num_layers) + " layers)");
      int layer = static_cast<int>(ln->layer);
      if (ln->output) {
        want = {T, cfg.hidden};
      } else {
        if (!cfg.is_moe_layer(layer))
          throw InputError(path + ": tensor '" + name + "': layer " + std::to_string(layer) + " has no router in this model");
        want = {T, cfg.num_experts};
      }
    } else {
      g.unknown.push_back(name);
      continue;
    }
    if (e.dtype != DType::F32) throw InputError(path + ": tensor '" + name + "' must be F32, got " + dtype_name(e.dtype));
    if (e.shape != want)
      throw InputError(path + ": tensor '" + name + "' has shape " + shape_str(e.shape) + ", the model expects " +
                       shape_str(want));
    TensorView v = f->view(name);
    std::vector<float> data(static_cast<size_t>(v.numel()));
    if (!data.empty()) std::memcpy(data.data(), v.data, data.size() * 4);
    g.tensors[name] = std::move(data);
    g.shapes[name] = want;
  }
  for (int32_t id : g.generated_ids)
    if (id >= cfg.vocab) throw InputError(path + ": generated_ids holds token " + std::to_string(id) + ", outside the vocabulary");
  g.media = load_golden_media(*f, path, cfg, T);
  return g;
}

void compare_floats(const float* ours, const float* ref, size_t n, BoundaryResult& r) {
  double num = 0, den = 0, mx = 0;
  bool nan = false;
  for (size_t i = 0; i < n; i++) {
    double d = static_cast<double>(ours[i]) - ref[i];
    if (std::isnan(ours[i]) != std::isnan(ref[i])) nan = true;
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
    mx = std::max(mx, std::fabs(d));
  }
  r.max_abs = nan ? INFINITY : mx;
  r.rel_l2 = nan ? INFINITY : (den > 0 ? std::sqrt(num / den) : (num > 0 ? INFINITY : 0.0));
  r.bitwise = !nan && std::memcmp(ours, ref, n * sizeof(float)) == 0;
}

namespace {

std::vector<float> softmax_row(const float* l, int E) {
  std::vector<float> p(static_cast<size_t>(E));
  float mx = *std::max_element(l, l + E);
  double s = 0;
  for (int e = 0; e < E; e++) s += (p[static_cast<size_t>(e)] = std::exp(l[e] - mx));
  for (auto& x : p) x = static_cast<float>(x / s);
  return p;
}

std::vector<int> topk_of(const std::vector<float>& p, int k) {
  std::vector<int> idx(p.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)]; });
  idx.resize(static_cast<size_t>(k));
  std::sort(idx.begin(), idx.end());
  return idx;
}

int32_t argmax(const float* v, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; i++)
    if (v[i] > v[best]) best = i;  // first maximum wins, as torch.argmax
  return best;
}

}  // namespace

// The encoders' outputs against the reference's, all audios (and all images) in prompt order, before the
// thinker's boundaries: a wrong encoder shows here first, not as a far-away layer difference.
static void compare_encoders(const Golden& g, const MediaPrefill& pre, const ModelConfig& cfg, double tolerance, GoldenReport& rep) {
  const size_t H = static_cast<size_t>(cfg.hidden);
  std::map<std::string, std::vector<float>> ours;
  size_t k = 0;
  for (const MediaInput& m : golden_media_prompt(g.input_ids, g.media, std::filesystem::path(cfg.where).parent_path().string()).media) {
    const EncodedMedia& e = pre.encoded[k++];
    const size_t level = static_cast<size_t>(e.tokens) * H;
    auto append = [&](const std::string& name, int l) {
      auto from = e.rows.begin() + static_cast<std::ptrdiff_t>(size_t(l) * level);
      ours[name].insert(ours[name].end(), from, from + static_cast<std::ptrdiff_t>(level));
    };
    if (m.encoder == SegmentKind::audio_encoder) {
      append("audio_tower.output", 0);
    } else {
      append("visual.output", 0);
      for (int l = 1; l < e.levels; l++) append("visual.deepstack." + std::to_string(l - 1), l);
    }
  }
  for (const auto& [name, ref] : g.media.outputs) {
    BoundaryResult r;
    r.name = name;
    auto it = ours.find(name);
    if (it == ours.end() || it->second.size() != ref.size()) {
      r.passed = false;
      r.note = it == ours.end() ? "not produced by the run" : "the run produced another row count";
    } else {
      compare_floats(it->second.data(), ref.data(), ref.size(), r);
      r.passed = r.rel_l2 <= tolerance;
    }
    rep.passed &= r.passed;
    rep.boundaries.push_back(r);
  }
}

GoldenReport verify_golden(Runner& runner, const Golden& g, const ModelConfig& cfg, double tolerance) {
  GoldenReport rep;
  rep.golden = g.path;
  const int64_t T = static_cast<int64_t>(g.input_ids.size());
  Capture cap;
  std::vector<float> logits;
  StepMedia after;  // what every decode step carries after a prompt with media (its rope delta)
  if (g.media.empty()) {
    runner.step(g.input_ids.data(), T, 0, true, &cap, logits);
  } else {
    const std::string model_dir = std::filesystem::path(cfg.where).parent_path().string();
    const MediaPrefill pre = prefill_media_prompt(runner, cfg, model_dir, golden_media_prompt(g.input_ids, g.media, model_dir),
                                                  true, &cap, logits);
    after.rope_delta = pre.rope_delta;
    compare_encoders(g, pre, cfg, tolerance, rep);
  }

  std::vector<std::string> names = {"embeddings"};
  for (int i = 0; i < cfg.num_layers; i++) {
    if (cfg.is_moe_layer(i)) names.push_back("layers." + std::to_string(i) + ".router_logits");
    names.push_back("layers." + std::to_string(i) + ".output");
  }
  names.push_back("norm");
  names.push_back("logits");
  for (const std::string& name : names) {
    auto it = g.tensors.find(name);
    if (it == g.tensors.end()) {
      rep.skipped.push_back(name);
      continue;
    }
    auto ours = cap.tensors.find(name);
    BoundaryResult r;
    r.name = name;
    if (ours == cap.tensors.end() || ours->second.size() != it->second.size()) {
      r.passed = false;
      r.note = "not produced by the run";
      rep.boundaries.push_back(r);
      rep.passed = false;
      continue;
    }
    compare_floats(ours->second.data(), it->second.data(), it->second.size(), r);
    r.passed = r.rel_l2 <= tolerance;
    if (name.find("router_logits") != std::string::npos) {
      // Compare the selected expert sets; a differing set passes only on a reference near-tie.
      const int E = cfg.num_experts, k = cfg.top_k;
      int differ = 0, ties = 0;
      for (int64_t t = 0; t < T; t++) {
        auto pr = softmax_row(it->second.data() + t * E, E);
        auto po = softmax_row(ours->second.data() + t * E, E);
        if (topk_of(pr, k) == topk_of(po, k)) continue;
        std::vector<float> s = pr;
        std::sort(s.begin(), s.end(), std::greater<float>());
        if (k < E && s[static_cast<size_t>(k - 1)] - s[static_cast<size_t>(k)] <= tolerance)
          ties++;
        else
          differ++;
      }
      if (differ) {
        r.passed = false;
        r.note = std::to_string(differ) + " tokens chose other experts";
      } else if (ties) {
        r.note = std::to_string(ties) + " top-k differences at reference near-ties";
      } else {
        r.note = "top-k sets equal";
      }
    }
    rep.passed &= r.passed;
    rep.boundaries.push_back(r);
  }
  for (const std::string& u : g.unknown) rep.skipped.push_back(u + " (unknown name, not compared)");

  if (g.has_generated && !g.generated_ids.empty()) {
    const int V = runner.vocab();
    std::vector<float> last(logits.end() - V, logits.end());
    int32_t next = argmax(last.data(), V);
    rep.generated.push_back(next);
    for (size_t n = 1; n < g.generated_ids.size(); n++) {
      if (g.media.empty())
        runner.step(&next, 1, T + static_cast<int64_t>(n) - 1, false, nullptr, logits);
      else
        runner.step_media(&next, 1, T + static_cast<int64_t>(n) - 1, false, nullptr, logits, after);
      next = argmax(logits.data(), V);
      rep.generated.push_back(next);
    }
    BoundaryResult r;
    r.name = "generated_ids";
    size_t match = 0;
    while (match < g.generated_ids.size() && rep.generated[match] == g.generated_ids[match]) match++;
    r.passed = match == g.generated_ids.size();
    r.bitwise = r.passed;
    r.note = std::to_string(match) + "/" + std::to_string(g.generated_ids.size()) + " tokens match";
    if (!r.passed) r.note += " (first difference at step " + std::to_string(match) + ")";
    rep.passed &= r.passed;
    rep.boundaries.push_back(r);
  } else {
    rep.skipped.push_back("generated_ids");
  }
  // A golden may omit any boundary (golden-format.md), but one that holds none proves nothing: a
  // truncated or wrongly written golden must not read as a pass.
  if (rep.boundaries.empty()) {
    BoundaryResult r;
    r.name = kNoBoundary;
    r.passed = false;
    r.note = "the golden holds no boundary to compare (only input_ids)";
    rep.boundaries.push_back(r);
    rep.passed = false;
  }
  return rep;
}

void print_golden_report(const GoldenReport& r, double tolerance) {
  std::printf("golden %s (tolerance: relative L2 <= %.0e)\n", r.golden.c_str(), tolerance);
  std::printf("  %-28s %12s %12s  %s\n", "boundary", "max_abs", "rel_l2", "verdict");
  for (const auto& b : r.boundaries) {
    if (b.name == "generated_ids" || b.name == kNoBoundary)
      std::printf("  %-28s %12s %12s  %s  %s\n", b.name.c_str(), "-", "-", b.passed ? "ok" : "FAIL", b.note.c_str());
    else
      std::printf("  %-28s %12.3e %12.3e  %s%s%s\n", b.name.c_str(), b.max_abs, b.rel_l2, b.passed ? "ok" : "FAIL",
                  b.note.empty() ? "" : "  ", b.note.c_str());
  }
  for (const auto& s : r.skipped) std::printf("  %-28s %12s %12s  skipped (not in golden)\n", s.c_str(), "-", "-");
  std::printf("  => %s\n", r.passed ? "PASS" : "FAIL");
}

nlohmann::json golden_report_json(const GoldenReport& r) {
  nlohmann::json j;
  j["golden"] = r.golden;
  j["passed"] = r.passed;
  j["skipped"] = r.skipped;
  j["generated_ids"] = r.generated;
  for (const auto& b : r.boundaries) {
    nlohmann::json e{{"name", b.name}, {"passed", b.passed}, {"bitwise", b.bitwise}, {"note", b.note}};
    if (b.name != "generated_ids" && b.name != kNoBoundary) {
      e["max_abs"] = std::isfinite(b.max_abs) ? nlohmann::json(b.max_abs) : nlohmann::json("inf");
      e["rel_l2"] = std::isfinite(b.rel_l2) ? nlohmann::json(b.rel_l2) : nlohmann::json("inf");
    }
    j["boundaries"].push_back(e);
  }
  return j;
}

}  // namespace segpipe
