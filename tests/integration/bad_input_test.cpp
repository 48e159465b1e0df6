// Bad input files, end to end through the segpipe binary: each ends in exit 2 with one line on
// standard error naming the file (or key) at fault, never a hang, a crash or a silent guess.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "process_harness.h"

namespace segpipe::test {
namespace {

namespace fs = std::filesystem;

// A private copy of a committed checkpoint, to break.
struct ModelCopy {
  std::string root = temp_dir(), dir = root + "/m";
  explicit ModelCopy(const std::string& model) { fs::copy(source_path("models/" + model), dir, fs::copy_options::recursive); }
  ~ModelCopy() { fs::remove_all(root); }
  // Replaces a file of the checkpoint by a FIFO with no writer (opening it for reading would block).
  void fifo(const std::string& name) const {
    fs::remove_all(dir + "/" + name);
    ASSERT_EQ(mkfifo((dir + "/" + name).c_str(), 0644), 0);
  }
};

size_t lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

void expect_bad_input(const std::vector<std::string>& args, const std::string& named, const std::string& says = "") {
  // 30 s: a hang is killed and shows as exit 137 here, instead of stopping the suite.
  RunResult r = run_segpipe(args, {}, 30);
  EXPECT_EQ(r.rc, 2) << args[0] << " " << named << ": " << r.err;
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find(named), std::string::npos) << r.err;
  if (!says.empty()) EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
}

TEST(SpecialFiles, AFifoInPlaceOfACheckpointFileIsRefusedNotWaitedOn) {
  for (const std::string& name : {std::string("config.json"), std::string("model.safetensors.index.json"),
                                  std::string("model-00002-of-00003.safetensors")}) {
    ModelCopy m("tiny-qwen3-moe");
    m.fifo(name);
    expect_bad_input({"inspect", m.dir}, m.dir + "/" + name, "FIFO");
    expect_bad_input({"generate", "--model", m.dir, "--tokens", "1 2", "--ids", "--max-new-tokens", "2"},
                     m.dir + "/" + name, "FIFO");
  }
  ModelCopy single("tiny-qwen3-dense");
  single.fifo("model.safetensors");
  expect_bad_input({"inspect", single.dir}, single.dir + "/model.safetensors", "FIFO");
  expect_bad_input({"plan", "--model", single.dir}, single.dir + "/model.safetensors", "FIFO");
}

TEST(SpecialFiles, AFifoInPlaceOfAPipelineOrTokenizerIsRefused) {
  std::string dir = temp_dir();
  ASSERT_EQ(mkfifo((dir + "/p.yaml").c_str(), 0644), 0);
  expect_bad_input({"generate", "--pipeline", dir + "/p.yaml"}, dir + "/p.yaml", "FIFO");
  ASSERT_EQ(mkfifo((dir + "/tokenizer.json").c_str(), 0644), 0);
  expect_bad_input({"tokenize", "--tokenizer", dir + "/tokenizer.json", "--text", "hi"}, dir + "/tokenizer.json", "FIFO");
  fs::remove_all(dir);
}

TEST(SpecialFiles, ADirectoryInPlaceOfConfigJsonSaysSo) {
  ModelCopy m("tiny-qwen3-moe");
  fs::remove(m.dir + "/config.json");
  fs::create_directory(m.dir + "/config.json");
  // It used to report "invalid JSON ... unexpected end of input".
  expect_bad_input({"inspect", m.dir}, m.dir + "/config.json", "is a directory");
}

}  // namespace
}  // namespace segpipe::test
