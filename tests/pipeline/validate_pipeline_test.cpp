// The rules of pipeline-yaml.md that need the checkpoint: each violated once, on a small edit of one
// valid pipeline, with the full message and the position of the key at fault.
#include <gtest/gtest.h>

#include "orchestrator/pipeline/pipeline.h"
#include "tests/pipeline/pipeline_examples.h"

namespace segpipe {
namespace {

// 4 layers, 8 experts: layers 2..3 send their experts to two banks.
const std::string kBanks = R"(version: 1
model: m
segments:
  - name: embed
    kind: embeddings
  - name: early
    kind: layers
    layers: [0, 1]
  - name: late
    kind: layers
    layers: [2, 3]
    experts: banks
  - name: bank-a
    kind: experts
    layers: [2, 3]
    experts: [0, 3]
  - name: bank-b
    kind: experts
    layers: [2, 3]
    experts: [4, 7]
  - name: head
    kind: lm_head
)";

// kBanks with `from` (which must occur exactly once) replaced by `to`.
std::string with(const std::string& base, const std::string& from, const std::string& to) {
  size_t at = base.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  EXPECT_EQ(base.find(from, at + 1), std::string::npos) << from;
  std::string out = base;
  return out.replace(at, from.size(), to);
}

std::string validate_error(const std::string& yaml, const ModelSummary& model = test::tiny_model(), int cuda = 0) {
  PipelineSpec spec = parse_pipeline_string(yaml, "p.yaml", "/pipes");
  try {
    validate_pipeline(spec, model, cuda);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ValidatePipeline, ValidExamples) {
  for (const test::Example& ex : test::valid_examples()) {
    SCOPED_TRACE(ex.name);
    PipelineSpec spec = parse_pipeline_string(ex.yaml, "p.yaml", "/pipes");
    EXPECT_NO_THROW(validate_pipeline(spec, ex.model, 2));
  }
  EXPECT_EQ(validate_error(kBanks), "(no error)");
}

TEST(ValidatePipeline, PlanResolvesSettingsAndOwners) {
  PipelinePlan plan = validate_pipeline(parse_pipeline_string(test::kTinyFull, "t.yaml", "/p"), test::tiny_model(), 2);
  ASSERT_EQ(plan.segments.size(), 6u);
  EXPECT_EQ(plan.model_dir, "/p/tiny");
  EXPECT_EQ(plan.transport, Transport::inproc);
  EXPECT_TRUE(plan.restart);
  EXPECT_EQ(plan.timeout_ms, 2500);
  EXPECT_EQ(plan.gpu_kernels, GpuKernels::portable);
  EXPECT_EQ(plan.gpu_memory, GpuMemory::unified);
  EXPECT_EQ(plan.embeddings_segment(), 1);
  EXPECT_EQ(plan.lm_head_segment(), 5);

  const PlannedSegment& bank_b = plan.segments[0];
  EXPECT_EQ(bank_b.device, (Device{Device::Type::cuda, 1}));  // own key
  EXPECT_EQ(bank_b.dtype, ComputeDType::bfloat16);                   // from defaults
  EXPECT_EQ(bank_b.threads, 4);
  EXPECT_EQ(bank_b.moe_layers, (std::vector<int>{2, 3}));
  EXPECT_EQ(plan.segments[1].device, (Device{Device::Type::cpu, 0}));
  EXPECT_EQ(plan.segments[3].threads, 8);
  EXPECT_EQ(plan.segments[3].placement, ExpertPlacement::banks);
  EXPECT_EQ(plan.segments[4].dtype, ComputeDType::float32);

  EXPECT_EQ(plan.layer_owner(0), 2);
  EXPECT_EQ(plan.layer_owner(3), 3);
  for (int x = 0; x < 8; ++x) {
    EXPECT_EQ(plan.expert_owner(0, x), -1);  // early: experts: local
    EXPECT_EQ(plan.expert_owner(1, x), -1);
    EXPECT_EQ(plan.expert_owner(2, x), x < 4 ? 4 : 0);
    EXPECT_EQ(plan.expert_owner(3, x), x < 4 ? 4 : 0);
  }
}

TEST(ValidatePipeline, BuiltInDefaults) {
  PipelinePlan plan = validate_pipeline(parse_pipeline_string(test::kDenseMinimal), test::dense_model(), 0);
  EXPECT_EQ(plan.transport, Transport::shm);
  EXPECT_FALSE(plan.restart);
  EXPECT_EQ(plan.timeout_ms, kDefaultTimeoutMs);
  EXPECT_EQ(plan.gpu_kernels, GpuKernels::automatic);
  EXPECT_EQ(plan.gpu_memory, GpuMemory::automatic);
  EXPECT_EQ(plan.segments[1].device, Device{});
  EXPECT_EQ(plan.segments[1].dtype, ComputeDType::float32);
  EXPECT_EQ(plan.segments[1].threads, kDefaultThreads);
  EXPECT_EQ(plan.num_experts, 0);
}

TEST(ValidatePipeline, SparseStepSkipsDenseLayersInBankRange) {
  PipelinePlan plan = validate_pipeline(parse_pipeline_string(test::kSparseStep), test::sparse_model(), 0);
  EXPECT_EQ(plan.segments[2].moe_layers, (std::vector<int>{1, 3}));
  EXPECT_EQ(plan.expert_owner(0, 0), -1);
  EXPECT_EQ(plan.expert_owner(1, 7), 2);
  EXPECT_EQ(plan.expert_owner(2, 7), -1);
  EXPECT_EQ(plan.expert_owner(3, 0), 2);
}

TEST(ValidatePipeline, NamesAreUnique) {
  EXPECT_EQ(validate_error(with(kBanks, "name: bank-b", "name: bank-a")),
            "p.yaml:17:5: duplicate segment name 'bank-a' (first used at line 13)");
}

TEST(ValidatePipeline, ExactlyOneEmbeddings) {
  EXPECT_EQ(validate_error(with(kBanks, "  - name: embed\n    kind: embeddings\n", "")),
            "p.yaml:3:1: no embeddings segment: a pipeline has exactly one");
  EXPECT_EQ(validate_error(
                with(kBanks, "    kind: embeddings\n", "    kind: embeddings\n  - {name: e2, kind: embeddings}\n")),
            "p.yaml:6:16: second embeddings segment 'e2': a pipeline has exactly one (first: 'embed')");
}

TEST(ValidatePipeline, ExactlyOneLmHead) {
  EXPECT_EQ(validate_error(with(kBanks, "  - name: head\n    kind: lm_head\n", "")),
            "p.yaml:3:1: no lm_head segment: a pipeline has exactly one");
  EXPECT_EQ(validate_error(kBanks + "  - name: head2\n    kind: lm_head\n"),
            "p.yaml:24:5: second lm_head segment 'head2': a pipeline has exactly one (first: 'head')");
}

TEST(ValidatePipeline, EmbeddingsFirst) {
  std::string moved = with(kBanks, "  - name: embed\n    kind: embeddings\n", "");
  moved = with(moved, "  - name: late\n", "  - name: embed\n    kind: embeddings\n  - name: late\n");
  EXPECT_EQ(validate_error(moved),
            "p.yaml:8:5: embeddings segment 'embed' comes after layers segment 'early': segments are listed in "
            "data-flow order, embeddings first");
  // Experts segments may stand anywhere, even before the embeddings.
  std::string bank_first =
      with(kBanks, "  - name: bank-b\n    kind: experts\n    layers: [2, 3]\n    experts: [4, 7]\n", "");
  bank_first = with(bank_first, "segments:\n",
                    "segments:\n  - {name: bank-b, kind: experts, layers: [2, 3], experts: [4, 7]}\n");
  EXPECT_EQ(validate_error(bank_first), "(no error)");
}

// Encoders (Qwen3-Omni's towers) feed the embeddings: listed before them, at most one of each kind.
TEST(ValidatePipeline, EncodersComeFirstOncePerKind) {
  const std::string enc = "segments:\n  - {name: vision, kind: vision_encoder}\n  - {name: audio, kind: audio_encoder}\n";
  EXPECT_EQ(validate_error(with(kBanks, "segments:\n", enc)), "(no error)");
  EXPECT_EQ(validate_error(with(kBanks, "segments:\n", enc + "  - {name: vision2, kind: vision_encoder}\n")),
            "p.yaml:6:21: second vision_encoder segment 'vision2': a pipeline has at most one (first: 'vision')");
  EXPECT_EQ(validate_error(kBanks + "  - {name: audio, kind: audio_encoder}\n"),
            "p.yaml:23:19: audio_encoder segment 'audio' comes after embeddings segment 'embed': segments are "
            "listed in data-flow order, encoders first");
  // An encoder holds no layers or experts.
  EXPECT_THROW(parse_pipeline_string(with(kBanks, "segments:\n", "segments:\n  - {name: a, kind: audio_encoder, layers: [0, 1]}\n"),
                                     "p.yaml", "/pipes"),
               InputError);
}

TEST(ValidatePipeline, LmHeadAfterAllLayers) {
  std::string moved = with(kBanks, "  - name: head\n    kind: lm_head\n", "");
  moved = with(moved, "  - name: late\n", "  - name: head\n    kind: lm_head\n  - name: late\n");
  EXPECT_EQ(validate_error(moved),
            "p.yaml:12:5: layers segment 'late' comes after lm_head segment 'head': segments are listed in "
            "data-flow order, lm_head after all layers");
}

TEST(ValidatePipeline, LayersInBounds) {
  EXPECT_EQ(validate_error(with(kBanks, "layers: [2, 3]\n    experts: banks", "layers: [2, 4]\n    experts: banks")),
            "p.yaml:11:5: 'layers' [2, 4] in segment 'late' is out of bounds: the model has 4 decoder layers (0..3)");
}

TEST(ValidatePipeline, LayersHaveNoGap) {
  EXPECT_EQ(validate_error(with(kBanks, "layers: [0, 1]", "layers: [0, 0]")),
            "p.yaml:11:5: 'layers' in segment 'late' starts at 2: layer 1 is in no layers segment (gap after segment "
            "'early')");
  EXPECT_EQ(validate_error(with(kBanks, "layers: [0, 1]", "layers: [1, 1]")),
            "p.yaml:8:5: 'layers' in segment 'early' starts at 1: layer 0 is in no layers segment");
  EXPECT_EQ(validate_error(with(kBanks, "layers: [2, 3]\n    experts: banks", "layers: [2, 2]\n    experts: banks")),
            "p.yaml:11:5: layer 3 is in no layers segment (the model has 4 decoder layers)");
  EXPECT_EQ(validate_error(with(kBanks, "layers: [0, 1]", "layers: [0, 3]"), test::all_moe(6, 8)),
            "p.yaml:11:5: 'layers' [2, 3] in segment 'late' overlaps segment 'early' [0, 3]: each decoder layer "
            "belongs to exactly one layers segment, in order");
  EXPECT_EQ(validate_error(
                "version: 1\nmodel: m\nsegments:\n  - {name: e, kind: embeddings}\n  - {name: h, kind: lm_head}\n"),
            "p.yaml:3:1: layers 0..3 are in no layers segment (the model has 4 decoder layers)");
}

TEST(ValidatePipeline, LayersInOrder) {
  std::string swapped = with(kBanks, "  - name: early\n    kind: layers\n    layers: [0, 1]\n", "");
  swapped =
      with(swapped, "  - name: bank-a\n", "  - name: early\n    kind: layers\n    layers: [0, 1]\n  - name: bank-a\n");
  EXPECT_EQ(validate_error(swapped),
            "p.yaml:8:5: 'layers' in segment 'late' starts at 2: layers 0..1 are in no layers segment");
}

TEST(ValidatePipeline, ExpertsInBounds) {
  EXPECT_EQ(validate_error(with(kBanks, "experts: [4, 7]", "experts: [4, 8]")),
            "p.yaml:20:5: 'experts' [4, 8] in segment 'bank-b' is out of bounds: the model has 8 experts per MoE "
            "layer (0..7)");
  EXPECT_EQ(validate_error(with(kBanks, "layers: [2, 3]\n    experts: [4, 7]", "layers: [2, 5]\n    experts: [4, 7]")),
            "p.yaml:19:5: 'layers' [2, 5] in segment 'bank-b' is out of bounds: the model has 4 decoder layers (0..3)");
}

TEST(ValidatePipeline, ExpertsHaveNoOverlap) {
  EXPECT_EQ(validate_error(with(kBanks, "experts: [4, 7]", "experts: [3, 7]")),
            "p.yaml:20:5: expert 3 of layer 2 is in experts segments 'bank-a' and 'bank-b': each expert belongs to "
            "exactly one");
}

TEST(ValidatePipeline, ExpertsHaveNoGap) {
  EXPECT_EQ(validate_error(with(kBanks, "experts: [4, 7]", "experts: [6, 7]")),
            "p.yaml:12:5: experts 4..5 of layer 2 are in no experts segment (segment 'late' has experts: banks)");
  EXPECT_EQ(validate_error(with(kBanks, "layers: [2, 3]\n    experts: [4, 7]", "layers: [2, 2]\n    experts: [4, 7]")),
            "p.yaml:12:5: experts 4..7 of layer 3 are in no experts segment (segment 'late' has experts: banks)");
}

TEST(ValidatePipeline, ExpertsOnlyForBanksLayers) {
  EXPECT_EQ(validate_error(with(kBanks, "layers: [2, 3]\n    experts: [4, 7]", "layers: [1, 3]\n    experts: [4, 7]")),
            "p.yaml:19:5: 'layers' in experts segment 'bank-b' names MoE layer 1, but its layers segment 'early' "
            "computes its own experts (experts: local); set 'experts: banks' there or narrow the range");
}

TEST(ValidatePipeline, ExpertsSegmentNamesSomeMoeLayer) {
  // decoder_sparse_step 2: layers 0 and 2 are dense; a bank over [2, 2] serves nothing.
  std::string yaml =
      with(test::kSparseStep, "    layers: [0, 3]\n    experts: [0, 7]",
           "    layers: [0, 3]\n    experts: [0, 7]\n  - {name: b2, kind: experts, layers: [2, 2], experts: [0, 7]}");
  EXPECT_EQ(validate_error(yaml, test::sparse_model()),
            "p.yaml:14:31: 'layers' [2, 2] in experts segment 'b2' names no MoE layer (layer 2 is dense)");
}

TEST(ValidatePipeline, BanksNeedRoutedExperts) {
  EXPECT_EQ(validate_error(kBanks, test::dense(4)),
            "p.yaml:12:5: 'experts: banks' in segment 'late': the model has no routed experts");
  std::string yaml = R"(version: 1
model: m
segments:
  - {name: embed, kind: embeddings}
  - {name: a, kind: layers, layers: [0, 0], experts: banks}
  - {name: b, kind: layers, layers: [1, 3]}
  - {name: head, kind: lm_head}
)";
  EXPECT_EQ(validate_error(yaml, test::sparse_model()),
            "p.yaml:5:45: 'experts: banks' in segment 'a': layer 0 has no routed experts");
  EXPECT_EQ(validate_error(with(test::kDenseMinimal, "  - {name: head",
                                "  - {name: x, kind: experts, layers: [0, 3], experts: [0, 1]}\n  - {name: head"),
                           test::dense_model()),
            "p.yaml:6:15: experts segment 'x', but the model has no routed experts");
}

TEST(ValidatePipeline, MaxResidentExpertsNeedsLocalExperts) {
  EXPECT_EQ(validate_error(with(kBanks, "experts: banks", "experts: banks\n    max_resident_experts: 4")),
            "p.yaml:13:5: 'max_resident_experts' in segment 'late' has no effect: its experts live in experts "
            "segments (experts: banks)");
}

TEST(ValidatePipeline, DevicesExist) {
  EXPECT_EQ(validate_error(with(kBanks, "experts: banks", "experts: banks\n    device: cuda:1"), test::tiny_model(), 1),
            "p.yaml:13:5: segment 'late' uses cuda:1, which does not exist: 1 CUDA device is visible (cuda:0)");
  EXPECT_EQ(
      validate_error(with(kBanks, "experts: banks", "experts: banks\n    device: cuda:3"), test::tiny_model(), 2),
      "p.yaml:13:5: segment 'late' uses cuda:3, which does not exist: 2 CUDA devices are visible (cuda:0..cuda:1)");
  EXPECT_EQ(
      validate_error(with(kBanks, "model: m\n", "model: m\ndefaults:\n  device: cuda:0\n"), test::tiny_model(), 0),
      "p.yaml:4:3: segment 'embed' uses cuda:0 (from 'defaults'), which does not exist: no CUDA device is visible");
  // A default device that exists is fine.
  EXPECT_EQ(validate_error(with(kBanks, "model: m\n", "model: m\ndefaults: {device: cuda:0}\n"), test::tiny_model(), 1),
            "(no error)");
}

}  // namespace
}  // namespace segpipe

namespace segpipe {
namespace {

const std::string kHosts = R"(version: 1
model: m
hosts:
  - {name: a}
  - {name: b, address: 10.0.0.2}
segments:
  - {name: embed, kind: embeddings}
  - {name: body, kind: layers, layers: [0, 3], host: b}
  - {name: head, kind: lm_head}
)";

TEST(ValidatePipelineHosts, ResolvesEachSegmentsHost) {
  PipelinePlan p = validate_pipeline(parse_pipeline_string(kHosts, "p.yaml", "/pipes"), test::tiny_model(), 0);
  ASSERT_EQ(p.hosts.size(), 2u);
  EXPECT_EQ(p.hosts[0].name, "a");
  EXPECT_EQ(p.hosts[0].address, "localhost");  // the first host without an address: where segpipe runs
  EXPECT_TRUE(p.hosts[0].local);
  EXPECT_EQ(p.hosts[1].address, "10.0.0.2");
  EXPECT_FALSE(p.hosts[1].local);
  ASSERT_EQ(p.segments.size(), 3u);
  EXPECT_EQ(p.segments[0].host, 0);  // unset, no default: the first host
  EXPECT_EQ(p.segments[1].host, 1);
  EXPECT_EQ(p.segments[2].host, 0);
  // `defaults: host` moves every segment that does not say otherwise.
  PipelinePlan q = validate_pipeline(
      parse_pipeline_string(with(kHosts, "hosts:", "defaults: {host: b}\nhosts:"), "p.yaml", "/pipes"),
      test::tiny_model(), 0);
  EXPECT_EQ(q.segments[0].host, 1);
  // Without `hosts`, one implicit local host.
  PipelinePlan r = validate_pipeline(parse_pipeline_string(kBanks, "p.yaml", "/pipes"), test::tiny_model(), 0);
  ASSERT_EQ(r.hosts.size(), 1u);
  EXPECT_TRUE(r.hosts[0].local);
}

TEST(ValidatePipelineHosts, Rules) {
  EXPECT_EQ(validate_error(with(kHosts, "host: b}", "host: c}")),
            "p.yaml:8:48: 'host' in segment 'body' names 'c', which 'hosts' does not list (a, b)");
  EXPECT_EQ(validate_error(with(kHosts, "hosts:", "defaults: {host: z}\nhosts:")),
            "p.yaml:3:12: 'host' in 'defaults' names 'z', which 'hosts' does not list (a, b)");
  EXPECT_EQ(validate_error(with(kHosts, "  - {name: b, address", "  - {name: a, address")),
            "p.yaml:5:6: duplicate host name 'a' in 'hosts' (first at line 4)");
  EXPECT_EQ(validate_error(with(kHosts, ", host: b}", "}")), "p.yaml:5:5: host 'b' runs no segment (no 'host: b')");
  EXPECT_EQ(validate_error(with(kHosts, "model: m\n", "model: m\ntransport: inproc\n")),
            "p.yaml:3:1: 'transport: inproc' runs every segment in one process, on one machine, but 'hosts' lists 2 "
            "hosts");
  // A bank on another host than the layers segment it serves: on the CPU, its host's proxy carries the
  // calls; a GPU's bank exchange is on its device, which no proxy reaches.
  PipelinePlan apart = validate_pipeline(
      parse_pipeline_string(with(test::kThreeHosts, "experts: [0, 3], host: b}", "experts: [0, 3], host: c}"),
                            "p.yaml", "/pipes"),
      test::tiny_model(), 0);
  EXPECT_EQ(apart.segments[3].host, 2);
  EXPECT_EQ(apart.segments[2].host, 1);
  EXPECT_EQ(validate_error(with(test::kThreeHosts, "experts: [0, 3], host: b}", "experts: [0, 3], host: c, device: cuda:0}"),
                           test::tiny_model(), 1),
            "p.yaml:12:69: experts segment 'bank-lo' runs on host 'c', but layers segment 'late', which it serves, runs "
            "on host 'b' and one of them on a GPU: a bank on another host than its layers segments runs on the CPU, "
            "and so do they");
  EXPECT_EQ(validate_error(with(kBanks, "kind: lm_head", "kind: lm_head\n    host: a")),
            "p.yaml:23:5: 'host' in segment 'head' names 'a', but the pipeline has no 'hosts' list");
}

}  // namespace
}  // namespace segpipe
