// A tiny synthetic checkpoint round-trips through the CLI: make-model writes it, inspect reads it
// and finds nothing missing or malformed (exit 0).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>

#include "segments_test_support.h"

namespace segpipe {
namespace {

struct Result {
  int code;
  std::string out;
};

Result run(const std::string& cmd) {
  Result r{-1, ""};
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

TEST(SyntheticCli, TinyPresetsRoundTripThroughInspect) {
  testing::TempDir d;
  for (const char* preset : {"tiny-qwen3", "tiny-qwen3-moe", "tiny-qwen3-omni", "tiny-qwen2-moe"}) {
    std::string out = d.file(preset);
    Result m = run(std::string(SEGPIPE_CLI) + " make-model --preset " + preset + " --out " + out + " --seed 7");
    ASSERT_EQ(m.code, 0) << m.out;
    Result i = run(std::string(SEGPIPE_CLI) + " inspect " + out);
    EXPECT_EQ(i.code, 0) << i.out;
    EXPECT_NE(i.out.find(preset == std::string("tiny-qwen3") ? "qwen3" : "moe"), std::string::npos) << i.out;
    EXPECT_NE(i.out.find("=> complete"), std::string::npos) << i.out;
    if (preset == std::string("tiny-qwen2-moe")) {
      EXPECT_NE(i.out.find("q/k/v biases"), std::string::npos) << i.out;
      EXPECT_NE(i.out.find("no q/k norm"), std::string::npos) << i.out;
      EXPECT_NE(i.out.find("shared expert"), std::string::npos) << i.out;
    }
  }
}

TEST(SyntheticCli, BadInputsExitTwo) {
  testing::TempDir d;
  EXPECT_EQ(run(std::string(SEGPIPE_CLI) + " make-model --preset nope --out " + d.file("x")).code, 2);
  EXPECT_EQ(run(std::string(SEGPIPE_CLI) + " make-model --preset tiny-qwen3 --out " + d.file("x") + " --seed abc").code, 2);
  EXPECT_EQ(run(std::string(SEGPIPE_CLI) + " inspect " + d.file("does-not-exist")).code, 2);
}

}  // namespace
}  // namespace segpipe
