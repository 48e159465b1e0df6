// Segmented pipelines of every shape the issue names are bit-identical to the same pipeline run
// in-process (segpipe verify --pipeline), and the JSON report describes every segment process.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>

#include "process_harness.h"

namespace segpipe::test {
namespace {

struct Case {
  const char* name;
  const char* model;
  const char* segments;  // YAML list items
};

// models/tiny-qwen3-moe: 5 layers, layer 1 dense (mlp_only_layers), 8 experts top-2.
// models/tiny-qwen3-moe-hub: 4 layers, dense/moe alternating (decoder_sparse_step 2).
const Case kCases[] = {
    {"one_segment_per_layer", "tiny-qwen3-moe",
     "  - {name: embed, kind: embeddings}\n"
     "  - {name: l0, kind: layers, layers: [0, 0]}\n  - {name: l1, kind: layers, layers: [1, 1]}\n"
     "  - {name: l2, kind: layers, layers: [2, 2]}\n  - {name: l3, kind: layers, layers: [3, 3]}\n"
     "  - {name: l4, kind: layers, layers: [4, 4]}\n  - {name: head, kind: lm_head}\n"},
    {"uneven_layer_groups", "tiny-qwen3-moe",
     "  - {name: embed, kind: embeddings}\n  - {name: a, kind: layers, layers: [0, 0]}\n"
     "  - {name: b, kind: layers, layers: [1, 3]}\n  - {name: c, kind: layers, layers: [4, 4]}\n"
     "  - {name: head, kind: lm_head}\n"},
    {"one_expert_bank", "tiny-qwen3-moe",
     "  - {name: embed, kind: embeddings}\n  - {name: all, kind: layers, layers: [0, 4], experts: banks}\n"
     "  - {name: bank, kind: experts, layers: [0, 4], experts: [0, 7]}\n  - {name: head, kind: lm_head}\n"},
    {"two_expert_banks", "tiny-qwen3-moe",
     "  - {name: embed, kind: embeddings}\n  - {name: all, kind: layers, layers: [0, 4], experts: banks}\n"
     "  - {name: lo, kind: experts, layers: [0, 4], experts: [0, 3]}\n"
     "  - {name: hi, kind: experts, layers: [0, 4], experts: [4, 7]}\n  - {name: head, kind: lm_head}\n"},
    {"four_expert_banks", "tiny-qwen3-moe",
     "  - {name: embed, kind: embeddings}\n  - {name: early, kind: layers, layers: [0, 2], experts: banks}\n"
     "  - {name: late, kind: layers, layers: [3, 4], experts: banks}\n"
     "  - {name: b0, kind: experts, layers: [0, 4], experts: [0, 1]}\n"
     "  - {name: b1, kind: experts, layers: [0, 4], experts: [2, 3]}\n"
     "  - {name: b2, kind: experts, layers: [0, 4], experts: [4, 5]}\n"
     "  - {name: b3, kind: experts, layers: [0, 4], experts: [6, 7]}\n  - {name: head, kind: lm_head}\n"},
    {"banks_over_part_of_the_moe_layers", "tiny-qwen3-moe",
     "  - {name: embed, kind: embeddings}\n  - {name: early, kind: layers, layers: [0, 2]}\n"
     "  - {name: late, kind: layers, layers: [3, 4], experts: banks}\n"
     "  - {name: lo, kind: experts, layers: [3, 4], experts: [0, 2]}\n"
     "  - {name: hi, kind: experts, layers: [3, 4], experts: [3, 7]}\n  - {name: head, kind: lm_head}\n"},
    {"dense_layers_between_moe_layers_with_banks", "tiny-qwen3-moe-hub",
     "  - {name: embed, kind: embeddings}\n  - {name: a, kind: layers, layers: [0, 1], experts: banks}\n"
     "  - {name: b, kind: layers, layers: [2, 3], experts: banks}\n"
     "  - {name: lo, kind: experts, layers: [0, 3], experts: [0, 4]}\n"
     "  - {name: hi, kind: experts, layers: [0, 3], experts: [5, 7]}\n  - {name: head, kind: lm_head}\n"},
    {"omni_thinker_with_banks", "tiny-qwen3-omni",
     "  - {name: embed, kind: embeddings}\n  - {name: a, kind: layers, layers: [0, 0]}\n"
     "  - {name: b, kind: layers, layers: [1, 2], experts: banks}\n"
     "  - {name: lo, kind: experts, layers: [1, 2], experts: [0, 3]}\n"
     "  - {name: hi, kind: experts, layers: [1, 2], experts: [4, 7]}\n  - {name: head, kind: lm_head}\n"},
    {"dense_tied_model", "tiny-qwen3-dense",
     "  - {name: embed, kind: embeddings}\n  - {name: a, kind: layers, layers: [0, 1]}\n"
     "  - {name: b, kind: layers, layers: [2, 2]}\n  - {name: head, kind: lm_head}\n"},
};

class SegmentedPipeline : public ::testing::TestWithParam<Case> {};

TEST_P(SegmentedPipeline, IsBitIdenticalToInProcessAndReportsEverySegment) {
  const Case& c = GetParam();
  std::string dir = temp_dir();
  std::string yaml = dir + "/p.yaml";
  write_file(yaml, std::string("version: 1\nmodel: ") + source_path("models/") + c.model +
                       "\ndefaults: {threads: 1}\nsegments:\n" + c.segments);
  RunResult r = run_segpipe({"verify", "--pipeline", yaml, "--json", dir + "/r.json", "--max-new-tokens", "6"});
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("generated_ids"), std::string::npos);
  EXPECT_EQ(r.out.find("DIFFERS"), std::string::npos) << r.out;
  std::ifstream in(dir + "/r.json");
  nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_TRUE(j["passed"].get<bool>());
  size_t n_segments = 0;
  for (const char* p = c.segments; (p = std::strstr(p, "name:")); p++) n_segments++;
  ASSERT_EQ(j["segments"].size(), n_segments);
  std::set<long> pids;
  for (auto& s : j["segments"]) {
    EXPECT_GT(s["tensors"].get<int>(), 0) << s;
    EXPECT_GT(s["weight_bytes"].get<long>(), 0) << s;
    EXPECT_GT(s["peak_rss_bytes"].get<long>(), 0) << s;
    pids.insert(s["pid"].get<long>());
  }
  EXPECT_EQ(pids.size(), n_segments) << "one process per segment";
  // Every boundary of the run appears, and every one is bitwise equal.
  for (auto& b : j["boundaries"]) EXPECT_TRUE(b["passed"].get<bool>()) << b;
  EXPECT_TRUE(leftover_arenas(r.pid).empty());
  EXPECT_TRUE(leftover_workers(r.pid).empty());
}

INSTANTIATE_TEST_SUITE_P(Shapes, SegmentedPipeline, ::testing::ValuesIn(kCases),
                         [](const auto& tp) { return std::string(tp.param.name); });

// Qwen2-MoE (q/k/v biases, no q/k norm, a shared expert beside the routed ones) through banks: the shared
// expert stays with its layer, so the banks' split must not change a bit.
TEST(SegmentedPipeline, Qwen2MoeWithBanksIsBitIdenticalToInProcess) {
  std::string dir = temp_dir();
  RunResult m = run_segpipe({"make-model", "--preset", "tiny-qwen2-moe", "--out", dir + "/m", "--seed", "3"});
  ASSERT_EQ(m.rc, 0) << m.err;
  write_file(dir + "/p.yaml", "version: 1\nmodel: " + dir + "/m\ndefaults: {threads: 1}\nsegments:\n"
             "  - {name: embed, kind: embeddings}\n  - {name: a, kind: layers, layers: [0, 1], experts: banks}\n"
             "  - {name: b, kind: layers, layers: [2, 3], experts: banks}\n"
             "  - {name: lo, kind: experts, layers: [0, 3], experts: [0, 2]}\n"
             "  - {name: hi, kind: experts, layers: [0, 3], experts: [3, 7]}\n  - {name: head, kind: lm_head}\n");
  RunResult r = run_segpipe({"verify", "--pipeline", dir + "/p.yaml", "--max-new-tokens", "6"});
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("DIFFERS"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("layers.3.routes"), std::string::npos) << r.out;
  EXPECT_TRUE(leftover_arenas(r.pid).empty());
}

// make-model --weights formula writes the config and the formula's seed, no tensors: GPU segments make the
// weights (tests/cuda checks them against the files); a CPU segment over such a folder is bad input naming
// the file, and so is a malformed marker.
TEST(FormulaWeights, CpuSegmentsAreRefusedNamingTheFile) {
  std::string dir = temp_dir();
  RunResult m = run_segpipe({"make-model", "--preset", "tiny-qwen3-moe", "--weights", "formula", "--out", dir + "/m"});
  ASSERT_EQ(m.rc, 0) << m.err;
  EXPECT_TRUE(std::filesystem::exists(dir + "/m/synthetic-weights.json"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/m/model.safetensors"));
  RunResult g = run_segpipe({"generate", "--model", dir + "/m", "--tokens", "1 2 3", "--ids", "--max-new-tokens", "2"});
  EXPECT_EQ(g.rc, 2) << g.err;
  EXPECT_NE(g.err.find("segment 'embed' runs on the CPU"), std::string::npos) << g.err;
  EXPECT_NE(g.err.find("synthetic-weights.json"), std::string::npos) << g.err;
  for (const auto& [text, why] : std::vector<std::pair<std::string, std::string>>{
           {"{\"format\": \"segpipe-synthetic-weights\", \"version\": 1, \"seed\": -1, \"dtype\": \"bfloat16\"}", "'seed'"},
           {"{\"format\": \"segpipe-synthetic-weights\", \"version\": 1, \"seed\": 1, \"dtype\": \"f16\"}", "'dtype'"},
           {"{\"format\": \"segpipe-synthetic-weights\", \"version\": 2, \"seed\": 1, \"dtype\": \"bfloat16\"}", "'version'"},
           {"{\"format\": \"x\"}", "'format'"},
           {"{\"format\": \"segpipe-synthetic-weights\", \"seeds\": 1}", "unknown key 'seeds'"},
           {"[1, 2", "not a JSON object"}}) {
    write_file(dir + "/m/synthetic-weights.json", text);
    RunResult r = run_segpipe({"generate", "--model", dir + "/m", "--tokens", "1 2 3", "--ids", "--max-new-tokens", "2"});
    EXPECT_EQ(r.rc, 2) << text << r.err;
    EXPECT_NE(r.err.find("synthetic-weights.json: "), std::string::npos) << text << r.err;
    EXPECT_NE(r.err.find(why), std::string::npos) << text << r.err;
  }
  RunResult bad = run_segpipe({"make-model", "--preset", "tiny-qwen3-moe", "--weights", "formula", "--dtype", "f32", "--out", dir + "/m2"});
  EXPECT_EQ(bad.rc, 2) << bad.err;
}

TEST(SegmentedPipeline, SameTokensAsInProcessThroughGenerate) {
  std::string dir = temp_dir();
  std::string body = std::string("version: 1\nmodel: ") + source_path("models/tiny-qwen3-moe") +
                     "\nsegments:\n" + kCases[4].segments;
  write_file(dir + "/shm.yaml", body);
  write_file(dir + "/inproc.yaml", body + "transport: inproc\n");
  RunResult a = run_segpipe({"generate", "--pipeline", dir + "/shm.yaml", "--tokens", "5 6 7 8", "--ids", "--max-new-tokens", "12"});
  RunResult b = run_segpipe({"generate", "--pipeline", dir + "/inproc.yaml", "--tokens", "5 6 7 8", "--ids", "--max-new-tokens", "12"});
  ASSERT_EQ(a.rc, 0) << a.err;
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_GE(std::count(a.out.begin(), a.out.end(), ' '), 11);
}

TEST(PipelineRules, ViolationsAreReportedWithFileLineColumnBeforeAnyProcessStarts) {
  std::string dir = temp_dir();
  struct Bad {
    const char* yaml;
    const char* expect;
  } bad[] = {
      {"  - {name: embed, kind: embeddings}\n  - {name: a, kind: layers, layers: [0, 1]}\n"
       "  - {name: b, kind: layers, layers: [3, 4]}\n  - {name: head, kind: lm_head}\n",
       "layer 2"},
      {"  - {name: embed, kind: embeddings}\n  - {name: a, kind: layers, layers: [0, 4], experts: banks}\n"
       "  - {name: lo, kind: experts, layers: [0, 4], experts: [0, 2]}\n  - {name: head, kind: lm_head}\n",
       "expert"},
      {"  - {name: embed, kind: embeddings, devce: cpu}\n  - {name: a, kind: layers, layers: [0, 4]}\n"
       "  - {name: head, kind: lm_head}\n",
       "devce"},
  };
  for (auto& b : bad) {
    std::string yaml = dir + "/bad.yaml";
    write_file(yaml, std::string("version: 1\nmodel: ") + source_path("models/tiny-qwen3-moe") + "\nsegments:\n" + b.yaml);
    RunResult r = run_segpipe({"verify", "--pipeline", yaml});
    EXPECT_EQ(r.rc, 2) << r.err;
    EXPECT_NE(r.err.find(yaml + ":"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(b.expect), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_TRUE(leftover_workers(r.pid).empty());
  }
}

}  // namespace
}  // namespace segpipe::test

namespace segpipe::test {
namespace {

// Every example pipeline in pipelines/ (the demo included) is valid, segmented equals
// in-process, and it passes its checkpoint's transformers goldens.
TEST(ExamplePipelines, VerifyAgainstInProcessAndGoldens) {
  int seen = 0;
  for (auto& e : std::filesystem::directory_iterator(source_path("pipelines"))) {
    std::string name = e.path().filename().string();
    if (e.path().extension() != ".yaml") continue;
    std::ifstream in(e.path());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // GPU pipelines (demo-cuda.yaml) are verified where a GPU is; without one (or without the CUDA
    // backend) they must be refused with a message that says so, never crash.
    if (text.find("device: cuda") != std::string::npos) {
      RunResult r = run_segpipe({"verify", "--pipeline", e.path().string()});
      if (r.rc != 0) {
        EXPECT_TRUE(r.rc == 2 || r.rc == 3) << name << r.err;
        EXPECT_NE(r.err.find("CUDA"), std::string::npos) << r.err;
      }
      continue;
    }
    seen++;
    RunResult r = run_segpipe({"verify", "--pipeline", e.path().string()});
    EXPECT_EQ(r.rc, 0) << name << r.out << r.err;
    auto m = text.find("model: ../models/");
    ASSERT_NE(m, std::string::npos) << name;
    std::string model = text.substr(m + 17, text.find('\n', m) - m - 17);
    std::vector<std::string> args = {"verify", "--pipeline", e.path().string()};
    for (auto& g : std::filesystem::directory_iterator(source_path("models/" + model + "/goldens")))
      if (g.path().extension() == ".safetensors") args.insert(args.end(), {"--golden", g.path().string()});
    RunResult gr = run_segpipe(args);
    EXPECT_EQ(gr.rc, 0) << name << gr.out << gr.err;
  }
  EXPECT_GE(seen, 4);
}

}  // namespace
}  // namespace segpipe::test
