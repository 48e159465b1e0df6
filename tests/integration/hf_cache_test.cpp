// `--model ORG/NAME` and a pipeline's `model: ORG/NAME` resolved from a local Hugging Face cache laid
// out as the hub client does (refs/main -> snapshots/<commit>/, files linked into blobs/), no
// download: the same tokens as the checkpoint folder itself; a repository not in the cache is exit 2
// in one line naming what is missing.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "process_harness.h"

namespace segpipe::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCommit = "9f1e2d3c4b5a69788796a5b4c3d2e1f0a1b2c3d4";

// A hub cache holding models/tiny-qwen3-moe as Test-Org/tiny-moe.
class HfCache : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = temp_dir();
    hub_ = root_ + "/hub";
    const fs::path repo = fs::path(hub_) / "models--Test-Org--tiny-moe";
    fs::create_directories(repo / "refs");
    fs::create_directories(repo / "blobs");
    const fs::path snap = repo / "snapshots" / kCommit;
    fs::create_directories(snap);
    int i = 0;
    for (const auto& e : fs::directory_iterator(source_path("models/tiny-qwen3-moe"))) {
      if (!e.is_regular_file()) continue;
      const std::string blob = "blob" + std::to_string(i++);
      fs::copy_file(e.path(), repo / "blobs" / blob);
      fs::create_symlink("../../blobs/" + blob, snap / e.path().filename());
    }
    std::ofstream(repo / "refs" / "main") << kCommit;
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string root_, hub_;
};

const std::vector<std::string> kGen = {"--tokens", "11 22 33 44", "--ids", "--max-new-tokens", "4"};

std::vector<std::string> generate(const std::string& flag, const std::string& value) {
  std::vector<std::string> a = {"generate", flag, value};
  a.insert(a.end(), kGen.begin(), kGen.end());
  return a;
}

TEST_F(HfCache, ModelRepositoryIdRunsLikeItsFolder) {
  RunResult ref = run_segpipe(generate("--model", source_path("models/tiny-qwen3-moe")));
  ASSERT_EQ(ref.rc, 0) << ref.err;
  RunResult r = run_segpipe(generate("--model", "Test-Org/tiny-moe"), {{"HF_HUB_CACHE", hub_}});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, ref.out);
  // HF_HOME/hub when HF_HUB_CACHE is not set.
  RunResult h = run_segpipe(generate("--model", "Test-Org/tiny-moe"), {{"HF_HUB_CACHE", ""}, {"HF_HOME", root_}});
  EXPECT_EQ(h.rc, 0) << h.err;
  EXPECT_EQ(h.out, ref.out);
  // A pipeline file naming the repository.
  const std::string yaml = root_ + "/p.yaml";
  write_file(yaml, "version: 1\nmodel: Test-Org/tiny-moe\nsegments:\n  - {name: embed, kind: embeddings}\n"
                   "  - {name: layers, kind: layers, layers: [0, 4]}\n  - {name: head, kind: lm_head}\n");
  RunResult p = run_segpipe(generate("--pipeline", yaml), {{"HF_HUB_CACHE", hub_}});
  EXPECT_EQ(p.rc, 0) << p.err;
  EXPECT_EQ(p.out, ref.out);
  // plan reads it too.
  RunResult pl = run_segpipe({"plan", "--model", "Test-Org/tiny-moe"}, {{"HF_HUB_CACHE", hub_}});
  EXPECT_EQ(pl.rc, 0) << pl.err;
}

TEST_F(HfCache, RepositoryNotInTheCacheIsExit2InOneLine) {
  for (const char* cmd : {"generate", "verify", "plan"}) {
    std::vector<std::string> a = {cmd, "--model", "Test-Org/absent"};
    RunResult r = run_segpipe(a, {{"HF_HUB_CACHE", hub_}});
    EXPECT_EQ(r.rc, 2) << cmd << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find("not in the local Hugging Face cache"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(hub_ + "/models--Test-Org--absent does not exist"), std::string::npos) << r.err;
  }
  const std::string yaml = root_ + "/absent.yaml";
  write_file(yaml, "version: 1\nmodel: Test-Org/absent\nsegments:\n  - {name: embed, kind: embeddings}\n");
  RunResult p = run_segpipe(generate("--pipeline", yaml), {{"HF_HUB_CACHE", hub_}});
  EXPECT_EQ(p.rc, 2) << p.err;
  EXPECT_NE(p.err.find(yaml + ":2:"), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("not in the local Hugging Face cache"), std::string::npos) << p.err;
}

}  // namespace
}  // namespace segpipe::test
