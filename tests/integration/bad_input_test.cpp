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
  if (!says.empty()) {
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
  }
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

// config.json values: refused with exit 2 naming the file and the key, never replaced or kept silently.
TEST(ConfigJson, OutOfRangeAndDuplicateValuesAreExit2NamingTheKey) {
  struct Case {
    std::string from, to, key;
  };
  for (const Case& c : {Case{"\"rope_theta\": 1000000.0", "\"rope_theta\": -5", "rope_theta"},
                        Case{"\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 1e300", "rms_norm_eps"},
                        Case{"\"rope_theta\": 1000000.0", "\"rope_theta\": 1000000.0, \"rope_theta\": 5.0",
                             "duplicate key 'rope_theta'"}}) {
    ModelCopy m("tiny-qwen3-moe");
    std::ifstream in(m.dir + "/config.json");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    ASSERT_NE(text.find(c.from), std::string::npos) << c.from << " not in " << text;
    text.replace(text.find(c.from), c.from.size(), c.to);
    write_file(m.dir + "/config.json", text);
    expect_bad_input({"generate", "--model", m.dir, "--tokens", "1 2", "--ids", "--max-new-tokens", "2"},
                     m.dir + "/config.json", c.key);
  }
}

// Untrusted sizes: a document far larger than any pipeline is refused before it is parsed (a 100 MB
// YAML list ran out of memory, exit 3), and a huge value is not echoed whole into the message.
TEST(PipelineYaml, HugeDocumentsDeepNestingAndHugeValuesGiveShortMessages) {
  std::string dir = temp_dir();
  std::string big = "version: 1\nbogus:\n";
  while (big.size() < (2u << 20)) big += "  - 12345678\n";
  write_file(dir + "/big.yaml", big);
  expect_bad_input({"generate", "--pipeline", dir + "/big.yaml"}, dir + "/big.yaml", "limit");

  write_file(dir + "/deep.yaml", "version: 1\nsegments: " + std::string(5000, '[') + std::string(5000, ']') + "\n");
  expect_bad_input({"generate", "--pipeline", dir + "/deep.yaml"}, dir + "/deep.yaml", "nested");

  const std::string long_path = "/" + std::string(100000, 'p');
  RunResult r = run_segpipe({"generate", "--model", long_path, "--tokens", "1"});
  EXPECT_EQ(r.rc, 2) << r.err.substr(0, 300);
  EXPECT_EQ(lines(r.err), 1u);
  EXPECT_LT(r.err.size(), 1000u) << r.err.substr(0, 300);
  EXPECT_NE(r.err.find(" bytes)..."), std::string::npos) << r.err;
  fs::remove_all(dir);
}

// gpu_memory is a typed choice: a value it does not take stops the run before anything loads (exit 2,
// one line naming the file and the key); one it takes is accepted on a CPU-only pipeline too (it only
// concerns GPU segments).
TEST(PipelineYaml, GpuMemoryOutsideItsChoicesIsExit2NamingTheKey) {
  std::string dir = temp_dir();
  const std::string body = "version: 1\nmodel: " + source_path("models/tiny-qwen3-dense") +
                           "\ndefaults: {device: cpu, threads: 1}\nsegments:\n  - {name: embed, kind: embeddings}\n"
                           "  - {name: layers, kind: layers, layers: [0, 2]}\n  - {name: head, kind: lm_head}\n";
  for (const std::string bad : {"shared", "Unified", "[device]", "0"}) {
    write_file(dir + "/bad.yaml", body + "gpu_memory: " + bad + "\n");
    expect_bad_input({"generate", "--pipeline", dir + "/bad.yaml", "--tokens", "1 2", "--ids", "--max-new-tokens", "1"},
                     dir + "/bad.yaml", "'gpu_memory' must be one of auto | device | unified");
  }
  for (const std::string good : {"auto", "device", "unified"}) {
    write_file(dir + "/good.yaml", body + "gpu_memory: " + good + "\n");
    RunResult r = run_segpipe({"generate", "--pipeline", dir + "/good.yaml", "--tokens", "1 2", "--ids", "--max-new-tokens", "1"},
                              {}, 60);
    EXPECT_EQ(r.rc, 0) << good << ": " << r.err;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace segpipe::test
