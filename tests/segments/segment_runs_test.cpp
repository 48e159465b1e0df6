// Whole segments on committed checkpoints, through the in-process runner (orchestrator/drivers/runner.h):
// cached decode equals full recomputation, expert banks equal local experts, and the fused expert
// layout equals the per-expert layout — bit for bit, since every row is computed independently and
// every reduction has a fixed order.
#include <gtest/gtest.h>

#include "orchestrator/debugging/capture.h"
#include "orchestrator/debugging/golden.h"
#include "orchestrator/drivers/runner.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/model/config_file.h"
#include "segments/checkpoint/safetensors_writer.h"
#include "segments/model/tensor_map.h"
#include "segments_test_support.h"

namespace segpipe {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

RunPlan small_plan(const std::string& dir, int threads = 2) {
  RunPlan p = default_plan(dir, read_model_config(dir));
  p.threads = threads;
  p.max_seq = 64;
  return p;
}

// A deterministic prompt of n token ids in [0, vocab).
std::vector<int32_t> prompt(int n, int vocab, int salt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; i++) ids.push_back(static_cast<int32_t>((i * 37 + salt * 11 + 5) % vocab));
  return ids;
}

bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

class PrefillThenDecode : public ::testing::TestWithParam<std::string> {};

TEST_P(PrefillThenDecode, EqualsFullRecomputation) {
  const std::string dir = testing::model_dir(GetParam());
  ModelConfig cfg = read_model_config(dir);
  const int P = 5, N = 6;
  std::vector<int32_t> ids = prompt(P + N, cfg.vocab, 1);
  auto cached = make_inproc_runner(small_plan(dir));
  std::vector<float> logits;
  cached->step(ids.data(), P, 0, false, nullptr, logits);
  std::vector<std::vector<float>> step_logits{logits};
  for (int i = P; i < P + N; i++) {
    cached->step(&ids[static_cast<size_t>(i)], 1, i, false, nullptr, logits);
    step_logits.push_back(logits);
  }
  for (int n = 0; n <= N; n++) {
    // A fresh runner (thread count 1: the thread split must not matter either) prefilling everything.
    auto fresh = make_inproc_runner(small_plan(dir, 1));
    std::vector<float> full;
    fresh->step(ids.data(), P + n, 0, false, nullptr, full);
    ASSERT_EQ(full.size(), static_cast<size_t>(cfg.vocab));
    EXPECT_TRUE(bits_equal(full, step_logits[static_cast<size_t>(n)]))
        << GetParam() << ": logits after " << P + n << " tokens differ between cached decode and recomputation";
  }
  // all_logits=true: every row of a prefill equals the last-row logits of the shorter prefill.
  auto fresh = make_inproc_runner(small_plan(dir));
  std::vector<float> all;
  fresh->step(ids.data(), P + N, 0, true, nullptr, all);
  ASSERT_EQ(all.size(), static_cast<size_t>((P + N) * cfg.vocab));
  for (int n = 0; n <= N; n++) {
    std::vector<float> row(all.begin() + (P + n - 1) * cfg.vocab, all.begin() + (P + n) * cfg.vocab);
    EXPECT_TRUE(bits_equal(row, step_logits[static_cast<size_t>(n)])) << "row " << P + n - 1;
  }
}

INSTANTIATE_TEST_SUITE_P(CommittedModels, PrefillThenDecode,
                         ::testing::Values("tiny-qwen3-moe", "tiny-qwen3-dense", "tiny-qwen3-omni"),
                         [](const auto& tp) {
                           std::string s = tp.param;
                           for (auto& c : s)
                             if (c == '-') c = '_';
                           return s;
                         });

// Runs the prompt and returns every boundary, logits included.
Capture run_capture(const RunPlan& plan, const std::vector<int32_t>& ids, std::vector<float>* decode_logits = nullptr) {
  auto r = make_inproc_runner(plan);
  Capture cap;
  std::vector<float> logits;
  r->step(ids.data(), static_cast<int64_t>(ids.size()), 0, true, &cap, logits);
  if (decode_logits) {
    int32_t next = 3;
    r->step(&next, 1, static_cast<int64_t>(ids.size()), false, nullptr, *decode_logits);
  }
  return cap;
}

void expect_same_boundaries(const Capture& a, const Capture& b, const std::string& what) {
  ASSERT_EQ(a.order, b.order) << what;
  for (const std::string& n : a.order) EXPECT_TRUE(bits_equal(a.tensors.at(n), b.tensors.at(n))) << what << ": " << n;
  ASSERT_EQ(a.routes.size(), b.routes.size());
  for (auto& [l, r] : a.routes) {
    EXPECT_EQ(r.experts, b.routes.at(l).experts) << what << ": layer " << l;
    EXPECT_TRUE(bits_equal(r.weights, b.routes.at(l).weights)) << what << ": layer " << l;
  }
}

// embed, layers [0, L-1] with banks, the given expert banks, head.
RunPlan banked_plan(const std::string& dir, const std::vector<std::pair<int, int>>& banks) {
  ModelConfig cfg = read_model_config(dir);
  RunPlan p = small_plan(dir);
  p.segments.clear();
  p.segments.push_back({"embed", SegmentKind::embeddings});
  SegmentDesc l{"layers", SegmentKind::layers};
  l.layer_first = 0;
  l.layer_last = cfg.num_layers - 1;
  l.banks = true;
  p.segments.push_back(l);
  int i = 0;
  for (auto [e0, e1] : banks) {
    SegmentDesc b{"bank" + std::to_string(i++), SegmentKind::experts};
    b.layer_first = 0;
    b.layer_last = cfg.num_layers - 1;
    b.expert_first = e0;
    b.expert_last = e1;
    p.segments.push_back(b);
  }
  p.segments.push_back({"head", SegmentKind::lm_head});
  return p;
}

TEST(ExpertBanks, BitIdenticalToLocalExperts) {
  for (const char* model : {"tiny-qwen3-moe", "tiny-qwen3-omni"}) {
    const std::string dir = testing::model_dir(model);
    ModelConfig cfg = read_model_config(dir);
    ASSERT_EQ(cfg.num_experts, 8);
    std::vector<int32_t> ids = prompt(9, cfg.vocab, 2);
    std::vector<float> local_dec, two_dec, three_dec;
    Capture local = run_capture(small_plan(dir), ids, &local_dec);
    Capture two = run_capture(banked_plan(dir, {{0, 3}, {4, 7}}), ids, &two_dec);
    Capture three = run_capture(banked_plan(dir, {{0, 2}, {3, 5}, {6, 7}}), ids, &three_dec);
    EXPECT_FALSE(local.routes.empty());
    expect_same_boundaries(local, two, std::string(model) + " 2 banks");
    expect_same_boundaries(local, three, std::string(model) + " 3 banks");
    EXPECT_TRUE(bits_equal(local_dec, two_dec)) << model << ": decode step, 2 banks";
    EXPECT_TRUE(bits_equal(local_dec, three_dec)) << model << ": decode step, 3 banks";
  }
}

TEST(ExpertBanks, ReportsCountOnlyEachBanksOwnExperts) {
  const std::string dir = testing::model_dir("tiny-qwen3-moe");
  auto r = make_inproc_runner(banked_plan(dir, {{0, 2}, {3, 7}}));
  uint64_t b0 = 0, b1 = 0;
  for (auto& s : r->reports()) {
    if (s.name == "bank0") b0 = s.weight_bytes;
    if (s.name == "bank1") b1 = s.weight_bytes;
  }
  // Per expert and MoE layer: gate + up [48, 96] and down [96, 48] in bf16; 4 MoE layers.
  const uint64_t per_expert = 3ull * 48 * 96 * 2 * 4;
  EXPECT_EQ(b0, 3 * per_expert);
  EXPECT_EQ(b1, 5 * per_expert);
}

// Re-packs a per-expert checkpoint into the fused layout: mlp.experts.gate_up_proj [E, 2I, H] (gate
// rows, then up rows, per expert) and mlp.experts.down_proj [E, H, I]; every other tensor is copied.
void write_fused_copy(const std::string& src, const std::string& dst) {
  auto ck = Checkpoint::open(src);
  ModelConfig cfg = read_model_config(src);
  fs::create_directories(dst);
  fs::copy_file(src + "/config.json", dst + "/config.json");
  const int64_t E = cfg.num_experts, I = cfg.moe_intermediate, H = cfg.hidden;
  std::vector<TensorSpec> specs;
  std::map<std::string, std::vector<std::string>> parts;  // fused tensor -> per-expert sources in order
  for (const std::string& n : ck->tensor_names()) {
    if (n.find(".mlp.experts.") != std::string::npos) continue;
    specs.push_back({n, ck->entry(n).dtype, ck->entry(n).shape});
    parts[n] = {n};
  }
  for (int l = 0; l < cfg.num_layers; l++) {
    if (!cfg.is_moe_layer(l)) continue;
    std::string p = cfg.tensor_prefix + "layers." + std::to_string(l) + ".mlp.experts.";
    DType dt = ck->entry(p + "0.gate_proj.weight").dtype;
    specs.push_back({p + "gate_up_proj", dt, {E, 2 * I, H}});
    specs.push_back({p + "down_proj", dt, {E, H, I}});
    for (int e = 0; e < E; e++) {
      std::string q = p + std::to_string(e) + ".";
      parts[p + "gate_up_proj"].push_back(q + "gate_proj.weight");
      parts[p + "gate_up_proj"].push_back(q + "up_proj.weight");
      parts[p + "down_proj"].push_back(q + "down_proj.weight");
    }
  }
  std::map<std::string, std::string> bytes;  // concatenated source bytes per output tensor
  for (auto& [out, srcs] : parts)
    for (const std::string& s : srcs) {
      TensorView v = ck->view(s);
      bytes[out].append(static_cast<const char*>(v.data), v.nbytes);
    }
  write_safetensors(dst + "/model.safetensors", specs, {{"format", "pt"}},
                    [&](const TensorSpec& t, uint64_t first, uint64_t n, void* o) {
                      size_t es = dtype_size(t.dtype);
                      const std::string& b = bytes.at(t.name);
                      ASSERT_EQ(b.size(), t.nbytes());
                      std::memcpy(o, b.data() + first * es, n * es);
                    });
}

TEST(FusedExpertLayout, BitIdenticalToPerExpertLayout) {
  TempDir d;
  for (const char* model : {"tiny-qwen3-moe", "tiny-qwen3-omni"}) {
    const std::string src = testing::model_dir(model), dst = d.file(model);
    write_fused_copy(src, dst);
    auto ck = Checkpoint::open(dst);
    ModelConfig cfg = read_model_config(dst);
    int moe_layer = cfg.is_moe_layer(0) ? 0 : 2;
    ASSERT_EQ(expert_layout(*ck, cfg, moe_layer), ExpertLayout::Fused);
    ASSERT_FALSE(ck->has(cfg.tensor_prefix + "layers.0.mlp.experts.0.gate_proj.weight"));
    std::vector<int32_t> ids = prompt(8, cfg.vocab, 3);
    std::vector<float> per_dec, fused_dec, fused_banked_dec;
    Capture per = run_capture(small_plan(src), ids, &per_dec);
    Capture fused = run_capture(small_plan(dst), ids, &fused_dec);
    Capture fused_banked = run_capture(banked_plan(dst, {{0, 4}, {5, 7}}), ids, &fused_banked_dec);
    expect_same_boundaries(per, fused, std::string(model) + " fused");
    expect_same_boundaries(per, fused_banked, std::string(model) + " fused, banks");
    EXPECT_TRUE(bits_equal(per_dec, fused_dec));
    EXPECT_TRUE(bits_equal(per_dec, fused_banked_dec));
  }
}

TEST(FusedExpertLayout, PassesTheCommittedTransformersGolden) {
  // The reference side: the re-packed checkpoint still computes what transformers computed.
  TempDir d;
  const std::string src = testing::model_dir("tiny-qwen3-moe"), dst = d.file("fused");
  write_fused_copy(src, dst);
  ModelConfig cfg = read_model_config(dst);
  Golden g = load_golden(src + "/goldens/short.safetensors", cfg);
  auto r = make_inproc_runner(small_plan(dst));
  GoldenReport rep = verify_golden(*r, g, cfg, 1e-4);
  for (auto& b : rep.boundaries) EXPECT_TRUE(b.passed) << b.name << " rel_l2 " << b.rel_l2 << " " << b.note;
  EXPECT_TRUE(rep.passed);
}

}  // namespace
}  // namespace segpipe
