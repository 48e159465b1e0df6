// Every command's exit-2 and exit-3 paths, end to end (issue 14): bad input is exit 2 with one line
// naming the file, key or value at fault; a runtime failure is exit 3 with one line saying what failed
// (the segment, for a run). The table must name every command `segpipe --help` lists, so a new command
// cannot land without its two cases.
//
// The runtime failures are real ones: a copy of the demo checkpoint whose final norm holds a NaN (the
// logits go non-finite, which the lm_head segment stops on), or a standard output that cannot be
// written (/dev/full) for the commands that compute nothing.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "process_harness.h"

namespace segpipe::test {
namespace {

namespace fs = std::filesystem;

struct Shell {
  int rc = -1;
  std::string err;
};

// Runs `segpipe ARGS` through the shell with standard output sent to `out`; captures stderr.
Shell run_shell(const std::string& args, const std::string& dir, const std::string& out = "/dev/null") {
  const std::string err_file = dir + "/stderr.txt";
  const std::string cmd = std::string(SEGPIPE_BIN) + " " + args + " >" + out + " 2>" + err_file;
  const int st = std::system(cmd.c_str());
  Shell r;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  std::stringstream s;
  s << std::ifstream(err_file).rdbuf();
  r.err = s.str();
  return r;
}

// The demo checkpoint with a NaN in model.norm.weight, a pipeline over it, a question set, messages.
struct Fixture {
  std::string dir = temp_dir();
  std::string model = dir + "/nan-model", good = source_path("models/qwen3-moe-demo");
  Fixture() {
    fs::copy(good, model, fs::copy_options::recursive);
    poke_bf16(model + "/model.safetensors", "model.norm.weight", 5, 0x7fc0);  // a NaN
    const int layers = nlohmann::json::parse(std::ifstream(good + "/config.json")).at("num_hidden_layers");
    for (auto [name, m] : {std::pair{"nan.yaml", model}, {"good.yaml", good}})
      write_file(dir + "/" + name, "version: 1\nmodel: " + m +
                                       "\nsegments:\n  - {name: embed, kind: embeddings}\n"
                                       "  - {name: body, kind: layers, layers: [0, " + std::to_string(layers - 1) +
                                       "]}\n  - {name: head, kind: lm_head}\n");
    std::ifstream set(good + "/eval/heldout.jsonl");
    std::string line;
    std::getline(set, line);
    write_file(dir + "/set.jsonl", line + "\n");
    write_file(dir + "/messages.json", R"([{"role":"user","content":"What is 2 + 2?"}])");
  }
  ~Fixture() { fs::remove_all(dir); }
};

struct Case {
  std::string args;    // after `segpipe`
  std::string out;     // where standard output goes
  std::string expect;  // in the one line of stderr
};

void expect_one_line(const Shell& r, int code, const Case& c) {
  EXPECT_EQ(r.rc, code) << c.args << "\n" << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.args << "\n" << r.err;
  EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << "\nwanted: " << c.expect << "\n" << r.err;
}

TEST(ExitCodes, EveryCommandHasItsBadInputAndRuntimeFailurePaths) {
  Fixture f;
  const std::string d = f.dir, tok = f.good, missing = d + "/no-such-file";
  // A dump of the good model, for run-segment to replay through the broken one.
  ASSERT_EQ(run_shell("dump --pipeline " + d + "/good.yaml --tokens '5 6 7' --out " + d + "/dump", d).rc, 0);

  const std::map<std::string, std::pair<Case, Case>> table = {
      {"bench", {{"bench decode --model " + missing, "/dev/null", missing},
                 {"bench decode --model " + f.model + " --tokens 2 --prompt-tokens 4", "/dev/null",
                  "segment 'head' (lm_head): non-finite logits"}}},
      {"chat-template", {{"chat-template --tokenizer " + tok + " --messages " + missing, "/dev/null", missing},
                         {"chat-template --tokenizer " + tok + " --messages " + d + "/messages.json", "/dev/full",
                          "cannot write standard output"}}},
      {"detokenize", {{"detokenize --tokenizer " + tok + " --ids '1 x'", "/dev/null", "'x'"},
                      {"detokenize --tokenizer " + tok + " --ids '14990'", "/dev/full", "cannot write standard output"}}},
      {"dump", {{"dump --pipeline " + missing + " --tokens '1 2' --out " + d + "/d2", "/dev/null", missing},
                {"dump --pipeline " + d + "/nan.yaml --tokens '1 2' --out " + d + "/d3", "/dev/null",
                 "segment 'head'"}}},
      {"eval", {{"eval --model " + f.good + " --set " + missing, "/dev/null", missing},
                {"eval --model " + f.model + " --set " + d + "/set.jsonl", "/dev/null", "segment 'head' (lm_head): non-finite logits"}}},
      {"generate", {{"generate --model " + f.good + " --tokens '1 x'", "/dev/null", "'x'"},
                    {"generate --pipeline " + d + "/nan.yaml --tokens '1 2' --ids", "/dev/null",
                     "segment 'head'"}}},
      {"inspect", {{"inspect " + missing, "/dev/null", missing},
                   {"inspect " + f.good, "/dev/full", "cannot write standard output"}}},
      {"make-model", {{"make-model --preset no-such-preset --out " + d + "/mm", "/dev/null", "no-such-preset"},
                      {"make-model --preset tiny-qwen3 --out " + d + "/mm2", "/dev/full", "cannot write standard output"}}},
      {"memory", {{"memory --pipeline " + missing, "/dev/null", missing},
                  {"memory --pipeline " + d + "/nan.yaml --tokens '1 2' --no-inproc", "/dev/null", "segment 'head'"}}},
      {"plan", {{"plan --model " + missing, "/dev/null", missing},
                {"plan --model " + f.good, "/dev/full", "cannot write standard output"}}},
      {"run-segment", {{"run-segment --pipeline " + d + "/nan.yaml --segment no-such-segment --input " + d +
                            "/dump/head.input.safetensors --output " + d + "/o.safetensors",
                        "/dev/null", "no-such-segment"},
                       {"run-segment --pipeline " + d + "/nan.yaml --segment head --input " + d +
                            "/dump/head.input.safetensors --output " + d + "/o.safetensors",
                        "/dev/null", "non-finite logits"}}},
      {"tokenize", {{"tokenize --tokenizer " + missing + " --text hi", "/dev/null", missing},
                    {"tokenize --tokenizer " + tok + " --text hello", "/dev/full", "cannot write standard output"}}},
      // A golden that is not one (the checkpoint's config) is bad input; a broken model is a failure.
      {"verify", {{"verify --model " + f.good + " --golden " + f.good + "/config.json", "/dev/null", "config.json"},
                  {"verify --pipeline " + d + "/nan.yaml --tokens '1 2' --max-new-tokens 1", "/dev/null",
                   "segment 'head'"}}},
  };

  // The table covers exactly the commands the program lists.
  Shell help = run_shell("--help", d, d + "/help.txt");
  ASSERT_EQ(help.rc, 0);
  std::ifstream h(d + "/help.txt");
  std::set<std::string> listed;
  bool in_commands = false;
  for (std::string line; std::getline(h, line);) {
    if (line == "commands:") in_commands = true;
    else if (in_commands && line.size() > 2 && line[0] == ' ') listed.insert(line.substr(2, line.find(' ', 2) - 2));
  }
  std::set<std::string> covered;
  for (auto& [name, cases] : table) covered.insert(name);
  EXPECT_EQ(listed, covered) << "every command needs its exit-2 and exit-3 case here";

  for (auto& [name, cases] : table) {
    SCOPED_TRACE(name);
    expect_one_line(run_shell(cases.first.args, d, cases.first.out), 2, cases.first);
    expect_one_line(run_shell(cases.second.args, d, cases.second.out), 3, cases.second);
  }
}

}  // namespace
}  // namespace segpipe::test
