// Hugging Face repository ids where a checkpoint folder is expected (orchestrator/pipeline/hf_cache.h): which
// values are ids, which cache folder the environment names, and what a fake cache resolves to.
#include "orchestrator/pipeline/hf_cache.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace segpipe::hf {
namespace {

namespace fs = std::filesystem;

TEST(HfRepoId, WhatReadsAsAnId) {
  EXPECT_TRUE(looks_like_repo_id("Qwen/Qwen3-Omni-30B-A3B-Instruct"));
  EXPECT_TRUE(looks_like_repo_id("org_1/model.v2"));
  for (const char* s : {"", "Qwen", "/abs/path", "a/b/c", "../x", "./x", "a/..", "a/.hidden", "a/", "/b", "a b/c",
                        "models/tiny-qwen3-moe/"})
    EXPECT_FALSE(looks_like_repo_id(s)) << s;
}

// Sets environment variables for one test and restores them after it.
class EnvGuard {
 public:
  explicit EnvGuard(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (auto [k, v] : vars) {
      const char* old = std::getenv(k);
      saved_.push_back({k, old ? std::optional<std::string>(old) : std::nullopt});
      if (v) setenv(k, v, 1); else unsetenv(k);
    }
  }
  ~EnvGuard() {
    for (auto& [k, v] : saved_)
      if (v) setenv(k.c_str(), v->c_str(), 1); else unsetenv(k.c_str());
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(HfCacheDir, TheHubClientsOrder) {
  {
    EnvGuard g({{"HF_HUB_CACHE", "/c/hub"}, {"HF_HOME", "/h"}, {"XDG_CACHE_HOME", "/x"}, {"HOME", "/home/u"}});
    EXPECT_EQ(hub_cache_dir(), fs::path("/c/hub"));
  }
  {
    EnvGuard g({{"HF_HUB_CACHE", nullptr}, {"HF_HOME", "/h"}, {"XDG_CACHE_HOME", "/x"}, {"HOME", "/home/u"}});
    EXPECT_EQ(hub_cache_dir(), fs::path("/h/hub"));
  }
  {
    EnvGuard g({{"HF_HUB_CACHE", nullptr}, {"HF_HOME", nullptr}, {"XDG_CACHE_HOME", "/x"}, {"HOME", "/home/u"}});
    EXPECT_EQ(hub_cache_dir(), fs::path("/x/huggingface/hub"));
  }
  {
    EnvGuard g({{"HF_HUB_CACHE", nullptr}, {"HF_HOME", nullptr}, {"XDG_CACHE_HOME", nullptr}, {"HOME", "/home/u"}});
    EXPECT_EQ(hub_cache_dir(), fs::path("/home/u/.cache/huggingface/hub"));
  }
}

class FakeCache : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "segpipe-hfcache-XXXXXX").string();
    ASSERT_NE(mkdtemp(t.data()), nullptr);
    root_ = t;
    repo_ = root_ / "models--Org--Name";
    fs::create_directories(repo_ / "refs");
    fs::create_directories(repo_ / "snapshots" / kCommit);
    fs::create_directories(repo_ / "blobs");
    std::ofstream(repo_ / "blobs" / "b1") << "{}";
    fs::create_symlink("../../blobs/b1", repo_ / "snapshots" / kCommit / "config.json");
    std::ofstream(repo_ / "refs" / "main") << kCommit;  // no newline, as the hub client writes it
  }
  void TearDown() override { fs::remove_all(root_); }
  static constexpr const char* kCommit = "0123456789abcdef0123456789abcdef01234567";
  fs::path root_, repo_;
};

TEST_F(FakeCache, ResolvesTheSnapshotOfRefsMain) {
  EnvGuard g({{"HF_HUB_CACHE", root_.c_str()}});
  EXPECT_EQ(resolve_model("Org/Name"), (repo_ / "snapshots" / kCommit).string());
  // An existing path always wins; a value that is no id is left to the readers.
  EXPECT_EQ(resolve_model(root_.string()), root_.string());
  EXPECT_EQ(resolve_model("no/such/folder"), "no/such/folder");
}

TEST_F(FakeCache, MissingPiecesAreInputErrorsNamingThem) {
  EnvGuard g({{"HF_HUB_CACHE", root_.c_str()}});
  auto message = [](const std::string& id) {
    try {
      resolve_model(id);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message("Org/Other").find((root_ / "models--Org--Other").string() + " does not exist"), std::string::npos);
  EXPECT_NE(message("Org/Other").find("does not download"), std::string::npos);
  std::ofstream(repo_ / "refs" / "main") << "../../../etc";
  EXPECT_NE(message("Org/Name").find("does not hold a commit hash"), std::string::npos);
  std::ofstream(repo_ / "refs" / "main") << "fedcba9876543210fedcba9876543210fedcba98\n";
  EXPECT_NE(message("Org/Name").find("fedcba9876543210fedcba9876543210fedcba98 does not exist"), std::string::npos);
  fs::remove(repo_ / "refs" / "main");
  EXPECT_NE(message("Org/Name").find("refs/main does not exist"), std::string::npos);
}

}  // namespace
}  // namespace segpipe::hf
