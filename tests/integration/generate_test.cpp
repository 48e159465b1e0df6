// segpipe generate end to end: sampling reproducible and identical across transports, stop tokens from
// generation_config.json, the built-in demo, text in and text out through the real tokenizer.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "process_harness.h"

namespace segpipe::test {
namespace {

namespace fs = std::filesystem;

std::string banks_pipeline(const std::string& extra) {
  std::string dir = temp_dir();
  std::string path = dir + "/p.yaml";
  write_file(path, "version: 1\nmodel: " + source_path("models/tiny-qwen3-moe") + "\n" + extra +
                       "segments:\n"
                       "  - {name: embed, kind: embeddings}\n"
                       "  - {name: a, kind: layers, layers: [0, 2], experts: banks}\n"
                       "  - {name: b, kind: layers, layers: [3, 4]}\n"
                       "  - {name: lo, kind: experts, layers: [0, 2], experts: [0, 3]}\n"
                       "  - {name: hi, kind: experts, layers: [0, 2], experts: [4, 7]}\n"
                       "  - {name: head, kind: lm_head}\n");
  return path;
}

std::vector<std::string> sample_args(const std::string& yaml, const std::string& seed) {
  return {"generate", "--pipeline", yaml,          "--tokens", "3 1 4 1 5", "--ids", "--max-new-tokens",
          "16",       "--temperature", "1.5",      "--top-k",  "50",        "--top-p", "0.95", "--seed", seed};
}

TEST(Generate, SampledTokensAreReproducibleAndTheSameSegmentedAndInProcess) {
  std::string shm = banks_pipeline(""), inproc = banks_pipeline("transport: inproc\n");
  RunResult a = run_segpipe(sample_args(shm, "7"));
  RunResult b = run_segpipe(sample_args(shm, "7"));
  RunResult c = run_segpipe(sample_args(inproc, "7"));
  RunResult d = run_segpipe(sample_args(shm, "8"));
  ASSERT_EQ(a.rc, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.out, c.out);
  EXPECT_NE(a.out, d.out) << "another seed draws other tokens";
  RunResult greedy = run_segpipe({"generate", "--pipeline", shm, "--tokens", "3 1 4 1 5", "--ids", "--max-new-tokens", "16"});
  EXPECT_NE(a.out, greedy.out) << "temperature 1.5 must not be greedy";
  EXPECT_NE(a.err.find("time to first token"), std::string::npos) << a.err;
}

TEST(Generate, StopsAtAStopTokenFromGenerationConfig) {
  std::string model = source_path("models/tiny-qwen3-dense");
  RunResult r = run_segpipe({"generate", "--model", model, "--tokens", "7 8 9", "--ids", "--max-new-tokens", "8"});
  ASSERT_EQ(r.rc, 0) << r.err;
  std::istringstream in(r.out);
  std::vector<std::string> ids;
  for (std::string t; in >> t;) ids.push_back(t);
  ASSERT_EQ(ids.size(), 8u);
  // A copy whose generation_config names the 4th generated token as eos stops before it; choose a
  // token that does not occur earlier.
  size_t stop_at = 3;
  while (stop_at < ids.size() && std::find(ids.begin(), ids.begin() + static_cast<long>(stop_at), ids[stop_at]) !=
                                     ids.begin() + static_cast<long>(stop_at))
    stop_at++;
  ASSERT_LT(stop_at, ids.size());
  std::string dir = temp_dir() + "/m";
  fs::copy(model, dir, fs::copy_options::recursive);
  write_file(dir + "/generation_config.json", "{\"eos_token_id\": [" + ids[stop_at] + "]}");
  RunResult s = run_segpipe({"generate", "--model", dir, "--tokens", "7 8 9", "--ids", "--max-new-tokens", "8"});
  ASSERT_EQ(s.rc, 0) << s.err;
  std::string want;
  for (size_t i = 0; i < stop_at; i++) want += (i ? " " : "") + ids[i];
  EXPECT_EQ(s.out, want + "\n");
}

TEST(Generate, BuiltInDemoRunsAChatPromptThroughSeveralProcesses) {
  RunResult r = run_segpipe({"generate", "--max-new-tokens", "6"}, {}, 300);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  EXPECT_NE(r.err.find("generated 6 tokens"), std::string::npos) << r.err;
  // Text in, ids out and back: the demo's tokenizer is the real Qwen3 one.
  RunResult ids = run_segpipe({"generate", "--prompt", "Hello", "--ids", "--max-new-tokens", "3"}, {}, 300);
  ASSERT_EQ(ids.rc, 0) << ids.err;
}

TEST(Generate, BadInputIsExit2WithOneLine) {
  std::string model = source_path("models/tiny-qwen3-moe");
  struct Bad {
    std::vector<std::string> args;
    const char* expect;
  } bad[] = {
      {{"generate", "--model", model, "--tokens", "1 2 100000", "--ids"}, "100000"},
      {{"generate", "--model", model, "--prompt", "hi"}, "tokenizer.json"},
      {{"generate", "--model", model, "--tokens", "1 x"}, "'x'"},
      {{"generate", "--prompt", "\xff\xfe", "--max-new-tokens", "1"}, "UTF-8"},
      // It used to say "must be a number in [0.000000, 1.000000]" while refusing 0.
      {{"generate", "--model", model, "--tokens", "1", "--top-p", "0"}, "--top-p must be a number in (0, 1], got '0'"},
      {{"generate", "--model", model, "--tokens", "1", "--temperature", "-1"}, "must be a number in [0, 1e+06]"},
  };
  for (auto& b : bad) {
    RunResult r = run_segpipe(b.args, {}, 300);
    EXPECT_EQ(r.rc, 2) << r.err;
    EXPECT_NE(r.err.find(b.expect), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace segpipe::test
