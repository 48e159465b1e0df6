// The segment factory and the Segment interface on the CPU: each kind made from its params holds what
// its params name (its tensors, per the role table), an unsupported (kind, device) pair is refused
// naming both, and a layers step gives the same bits computed in place or from a separate input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "segments/checkpoint/checkpoint.h"
#include "segments/factory/segment_factory.h"
#include "segments/kinds/cpu_makers.h"
#include "segments/kinds/layers.h"
#include "segments/model/config_file.h"
#include "segments/model/tensor_map.h"
#include "segments_test_support.h"

namespace segpipe {
namespace {

// A checkpoint, its config and threads, and the env that hands them to the segments.
struct Model {
  explicit Model(const std::string& name, int64_t max_seq = 32)
      : dir(testing::model_dir(name)), cfg(read_model_config(dir)), ck(Checkpoint::open(dir)), pool(2) {
    env.cfg = &cfg;
    env.checkpoint = ck.get();
    env.pool = &pool;
    env.max_seq = max_seq;
  }
  std::string dir;
  ModelConfig cfg;
  std::shared_ptr<Checkpoint> ck;
  ThreadPool pool;
  SegmentEnv env;
};

SegmentParams params(SegmentKind kind, int l0 = -1, int l1 = -1, int e0 = -1, int e1 = -1) {
  SegmentParams p;
  p.kind = kind;
  p.layer_first = l0;
  p.layer_last = l1;
  p.expert_first = e0;
  p.expert_last = e1;
  return p;
}

std::set<std::string> names_of(const std::vector<LoadedTensor>& loaded) {
  std::set<std::string> s;
  for (const LoadedTensor& t : loaded) s.insert(t.name);
  return s;
}

// What the role table says a segment holds: layers [l0, l1] (without their routed experts), and
// experts [e0, e1] of the MoE layers among them.
std::set<std::string> layer_names(const Model& m, int l0, int l1) {
  std::set<std::string> s;
  for (int l = l0; l <= l1; l++)
    for (const TensorRole& r : layer_roles(m.cfg, l)) s.insert(r.name);
  return s;
}
std::set<std::string> expert_names(const Model& m, int l0, int l1, int e0, int e1) {
  std::set<std::string> s;
  for (int l = l0; l <= l1; l++) {
    if (!m.cfg.is_moe_layer(l)) continue;
    for (int e = e0; e <= e1; e++)
      for (const TensorRole& r : expert_roles(m.cfg, l, e, expert_layout(*m.ck, m.cfg, l))) s.insert(r.name);
  }
  return s;
}

void expect_params(const Segment& s, const SegmentParams& p) {
  EXPECT_EQ(s.params().kind, p.kind);
  EXPECT_EQ(s.params().layer_first, p.layer_first);
  EXPECT_EQ(s.params().layer_last, p.layer_last);
  EXPECT_EQ(s.params().banks, p.banks);
  EXPECT_EQ(s.params().expert_first, p.expert_first);
  EXPECT_EQ(s.params().expert_last, p.expert_last);
  EXPECT_EQ(s.params().max_resident_experts, p.max_resident_experts);
  EXPECT_EQ(s.params().device, p.device);
  EXPECT_EQ(s.params().dtype, p.dtype);
}

uint64_t sum_bytes(const std::vector<LoadedTensor>& loaded) {
  uint64_t b = 0;
  for (const LoadedTensor& t : loaded) b += t.bytes;
  return b;
}

TEST(MakeSegment, EmbeddingsHoldsTheTable) {
  Model m("tiny-qwen3-moe");
  const SegmentParams p = params(SegmentKind::embeddings);
  auto s = make_segment(p, m.env);
  expect_params(*s, p);
  EXPECT_EQ(names_of(s->loaded()), std::set<std::string>{embed_role(m.cfg).name});
  EXPECT_EQ(s->weight_bytes(), sum_bytes(s->loaded()));
  EXPECT_EQ(s->bank(), nullptr);
  EXPECT_EQ(s->expert_cache_stats().uses, 0u);
}

TEST(MakeSegment, LayersWithLocalExpertsHoldTheirLayersAndEveryExpert) {
  Model m("tiny-qwen3-moe");
  ASSERT_FALSE(m.cfg.is_moe_layer(1));  // the model's dense layer: a range over it has no experts there
  SegmentParams p = params(SegmentKind::layers, 1, 3);
  p.max_resident_experts = 3;
  auto s = make_segment(p, m.env);
  expect_params(*s, p);
  std::set<std::string> want = layer_names(m, 1, 3);
  want.merge(expert_names(m, 1, 3, 0, m.cfg.num_experts - 1));
  EXPECT_EQ(names_of(s->loaded()), want);
  EXPECT_EQ(s->bank(), nullptr);  // local experts are not a bank other segments reach
  EXPECT_EQ(s->expert_cache_stats().max_resident, 3);
}

TEST(MakeSegment, LayersWithBanksHoldNoRoutedExpert) {
  Model m("tiny-qwen3-moe");
  SegmentParams p = params(SegmentKind::layers, 0, 4);
  p.banks = true;
  auto s = make_segment(p, m.env);
  expect_params(*s, p);
  EXPECT_EQ(names_of(s->loaded()), layer_names(m, 0, 4));
  EXPECT_EQ(s->expert_cache_stats().max_resident, 0);
}

TEST(MakeSegment, ExpertsIsABankOverItsRanges) {
  Model m("tiny-qwen3-moe");
  const SegmentParams p = params(SegmentKind::experts, 0, 2, 4, 7);
  auto s = make_segment(p, m.env);
  expect_params(*s, p);
  EXPECT_EQ(names_of(s->loaded()), expert_names(m, 0, 2, 4, 7));
  ExpertBank* b = s->bank();
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->holds_layer(0));
  EXPECT_TRUE(b->holds_layer(2));
  EXPECT_FALSE(b->holds_layer(3));
  EXPECT_TRUE(b->owns(0, 4));
  EXPECT_TRUE(b->owns(2, 7));
  EXPECT_FALSE(b->owns(0, 3));  // another bank's expert
  EXPECT_FALSE(b->owns(1, 4));  // the dense layer has none
  // A bank is called by its layers segments; it has no step of its own.
  EXPECT_THROW(s->step(StepIO{}), RuntimeFailure);
}

TEST(MakeSegment, LmHeadHoldsTheNormAndTheHead) {
  Model m("tiny-qwen3-moe");
  const SegmentParams p = params(SegmentKind::lm_head);
  auto s = make_segment(p, m.env);
  expect_params(*s, p);
  std::set<std::string> want{final_norm_role(m.cfg).name};
  for (const TensorRole& r : lm_head_roles(m.cfg)) want.insert(r.name);
  EXPECT_EQ(names_of(s->loaded()), want);
  EXPECT_EQ(s->bank(), nullptr);
}

// The error names the kind and the device, whatever is missing: the backend, or the kind in it.
void expect_refused(const SegmentFactory& f, const SegmentParams& p, SegmentEnv& env,
                    std::initializer_list<std::string> needles) {
  try {
    f.make(p, env);
    ADD_FAILURE() << "made a segment of an unsupported kind and device";
  } catch (const InputError& e) {
    for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(MakeSegment, AnUnsupportedKindAndDeviceIsAnInputErrorNamingBoth) {
  Model m("tiny-qwen3-moe");
  SegmentFactory f;  // this process's factory may gain backends; this one holds the CPU's only
  f.add({Device::Type::cpu, cpu_segment_makers()});
  SegmentParams p = params(SegmentKind::layers, 0, 4);
  p.device = Device{Device::Type::cuda, 1};
  expect_refused(f, p, m.env, {"'layers'", "'cuda:1'", "no CUDA backend"});
  p = params(static_cast<SegmentKind>(7));
  expect_refused(f, p, m.env, {"'#7'", "'cpu'"});
  // A backend without the kind: a GPU table that makes embeddings only.
  static constexpr SegmentMaker kEmbeddingsOnly[] = {
      {SegmentKind::embeddings, [](const SegmentParams&, SegmentEnv&) -> std::unique_ptr<Segment> { return nullptr; }}};
  f.add({Device::Type::cuda, kEmbeddingsOnly});
  p = params(SegmentKind::experts, 0, 4, 0, 7);
  p.device = Device{Device::Type::cuda, 0};
  expect_refused(f, p, m.env, {"'experts'", "'cuda:0'", "does not implement"});
  // The CPU computes in float32 only.
  p = params(SegmentKind::lm_head);
  p.dtype = ComputeDType::bfloat16;
  expect_refused(f, p, m.env, {"'lm_head'", "'cpu'", "bfloat16"});
}

TEST(MakeSegment, KvStorageTooSmallForItsLayersIsRefused) {
  Model m("tiny-qwen3-moe", 16);
  std::vector<float> kv(static_cast<size_t>(LayersSegment::kv_floats_per_layer(m.cfg, 16) * 2 - 1));
  m.env.kv = kv;
  EXPECT_THROW(make_segment(params(SegmentKind::layers, 0, 1), m.env), RuntimeFailure);
}

// Hidden states of real tokens: the embeddings of a deterministic prompt.
std::vector<float> embedded(Model& m, int T) {
  std::vector<int32_t> ids;
  for (int t = 0; t < T; t++) ids.push_back((t * 37 + 5) % m.cfg.vocab);
  std::vector<float> x(static_cast<size_t>(T * m.cfg.hidden));
  auto e = make_segment(params(SegmentKind::embeddings), m.env);
  e->step({.in = ids.data(), .out = x.data(), .T = T});
  return x;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// In place (in == out) or from a separate input (copied to out first): the same bits, prefill and
// decode, and the separate input is left as it was (what lets a segment process repeat a step).
TEST(LayersStep, InPlaceAndCopiedInputGiveTheSameBits) {
  Model m("tiny-qwen3-moe");
  const int P = 6;
  const int64_t H = m.cfg.hidden;
  std::vector<float> x = embedded(m, P + 1);
  auto in_place = make_segment(params(SegmentKind::layers, 0, 4), m.env);
  auto copied = make_segment(params(SegmentKind::layers, 0, 4), m.env);
  for (auto [pos0, T] : {std::pair<int64_t, int64_t>{0, P}, {P, 1}}) {
    std::vector<float> a(x.begin() + pos0 * H, x.begin() + (pos0 + T) * H);
    const std::vector<float> in = a;
    std::vector<float> b(a.size(), -1.f);
    in_place->step({.in = a.data(), .out = a.data(), .T = T, .pos0 = pos0});
    copied->step({.in = in.data(), .out = b.data(), .T = T, .pos0 = pos0});
    EXPECT_TRUE(same_bits(a, b)) << "step at position " << pos0;
    EXPECT_FALSE(same_bits(a, in)) << "the layers changed nothing";
    EXPECT_TRUE(same_bits(in, std::vector<float>(x.begin() + pos0 * H, x.begin() + (pos0 + T) * H)));
  }
}

// A layers segment reaching two banks through env.experts equals one with local experts.
TEST(LayersStep, BanksThroughTheEnvEqualLocalExperts) {
  Model m("tiny-qwen3-moe");
  const int T = 5;
  std::vector<float> local = embedded(m, T), banked = local;
  auto lo = make_segment(params(SegmentKind::experts, 0, 4, 0, 2), m.env);
  auto hi = make_segment(params(SegmentKind::experts, 0, 4, 3, 7), m.env);
  BankedExperts banks({lo->bank(), hi->bank()});
  SegmentEnv env = m.env;
  env.experts = &banks;
  SegmentParams p = params(SegmentKind::layers, 0, 4);
  make_segment(p, m.env)->step({.in = local.data(), .out = local.data(), .T = T});
  p.banks = true;
  make_segment(p, env)->step({.in = banked.data(), .out = banked.data(), .T = T});
  EXPECT_TRUE(same_bits(local, banked));
  EXPECT_GT(lo->expert_cache_stats().uses + hi->expert_cache_stats().uses, 0u);
}

}  // namespace
}  // namespace segpipe
