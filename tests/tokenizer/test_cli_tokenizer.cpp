// Driver for the tokenize / detokenize / chat-template command functions: calls them as the segpipe
// main does and checks stdout against the reference fixtures.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "orchestrator/tokenizer/cli_tokenizer.h"
#include "segments/core/errors.h"

namespace {

namespace fs = std::filesystem;
using Cmd = int (*)(const std::vector<std::string>&);

// Runs a command with std::cout captured; returns its stdout.
std::string run(Cmd cmd, const std::vector<std::string>& args, int expected_rc = 0) {
  std::ostringstream captured;
  std::streambuf* old = std::cout.rdbuf(captured.rdbuf());
  int rc = -1;
  try {
    rc = cmd(args);
  } catch (...) {
    std::cout.rdbuf(old);
    throw;
  }
  std::cout.rdbuf(old);
  EXPECT_EQ(rc, expected_rc);
  return captured.str();
}

nlohmann::json fixture(const char* name) {
  std::ifstream f(std::string(SEGPIPE_TOKENIZER_FIXTURES) + "/" + name);
  return nlohmann::json::parse(f);
}

// A new folder of its own under the temp folder (mkdtemp): concurrent runs never share one.
fs::path unique_dir(const std::string& prefix) {
  std::string tmpl = (fs::temp_directory_path() / (prefix + "XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

std::string join_ids(const nlohmann::json& ids, const char* sep) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += sep;
    s += std::to_string(ids[i].get<int>());
  }
  return s;
}

const std::string kTok = SEGPIPE_TOKENIZER_DIR;

TEST(CliTokenizer, HelpReturnsZero) {
  EXPECT_NE(run(segpipe::cmd_tokenize, {"--help"}).find("usage: segpipe tokenize"), std::string::npos);
  EXPECT_NE(run(segpipe::cmd_detokenize, {"--help"}).find("usage: segpipe detokenize"), std::string::npos);
  EXPECT_NE(run(segpipe::cmd_chat_template, {"--help"}).find("usage: segpipe chat-template"), std::string::npos);
}

TEST(CliTokenizer, TokenizeTextMatchesReference) {
  const auto corpus = fixture("corpus.json");
  const auto ref = fixture("corpus_hf_ids.json");
  for (size_t i : {9u, 40u, 200u, 700u}) {
    const std::string out = run(segpipe::cmd_tokenize, {"--tokenizer", kTok, "--text", corpus[i].get<std::string>()});
    EXPECT_EQ(out, join_ids(ref["ids"][i], " ") + "\n") << "string " << i;
  }
}

TEST(CliTokenizer, TokenizeJsonlAndFile) {
  const auto corpus = fixture("corpus.json");
  const auto ref = fixture("corpus_hf_ids.json");
  const fs::path dir = unique_dir("segpipe-cli-tok-");
  nlohmann::json some = nlohmann::json::array();
  std::string expected;
  for (size_t i = 100; i < 160; ++i) {
    some.push_back(corpus[i]);
    expected += '[';
    expected += join_ids(ref["ids"][i], ",");
    expected += "]\n";
  }
  std::ofstream(dir / "strings.json") << some.dump();
  EXPECT_EQ(run(segpipe::cmd_tokenize, {"--tokenizer", kTok, "--file", (dir / "strings.json").string(), "--jsonl"}),
            expected);
  std::ofstream(dir / "text.txt", std::ios::binary) << corpus[300].get<std::string>();
  EXPECT_EQ(run(segpipe::cmd_tokenize, {"--tokenizer", kTok, "--file", (dir / "text.txt").string()}),
            join_ids(ref["ids"][300], " ") + "\n");
  fs::remove_all(dir);
}

TEST(CliTokenizer, DetokenizeMatchesReference) {
  const auto ref = fixture("corpus_hf_ids.json");
  for (size_t i : {12u, 500u, 1000u})
    EXPECT_EQ(run(segpipe::cmd_detokenize, {"--tokenizer", kTok, "--ids", join_ids(ref["ids"][i], " ")}),
              ref["decoded"][i].get<std::string>() + "\n");
}

TEST(CliTokenizer, ChatTemplateMatchesTransformers) {
  const auto cases = fixture("chat_renderings.json");
  const fs::path dir = unique_dir("segpipe-cli-chat-");
  int checked = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (cases[i].contains("tools")) continue;  // the command takes messages only
    const fs::path f = dir / (std::string("m") + std::to_string(i) + ".json");
    std::ofstream(f) << cases[i]["messages"].dump();
    std::vector<std::string> args{"--tokenizer", kTok, "--messages", f.string()};
    if (!cases[i]["enable_thinking"].get<bool>()) args.push_back("--no-thinking");
    if (!cases[i]["add_generation_prompt"].get<bool>()) args.push_back("--no-generation-prompt");
    std::string want = cases[i]["text"].get<std::string>();
    if (want.empty() || want.back() != '\n') want += '\n';
    EXPECT_EQ(run(segpipe::cmd_chat_template, args), want) << "case " << i;
    ++checked;
  }
  EXPECT_GE(checked, 25);
  fs::remove_all(dir);
}

TEST(CliTokenizer, BadUsageNamesTheFlag) {
  const auto expect = [](Cmd cmd, const std::vector<std::string>& args, const char* needle) {
    try {
      run(cmd, args);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const segpipe::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect(segpipe::cmd_tokenize, {"--text", "x"}, "--tokenizer is required");
  expect(segpipe::cmd_tokenize, {"--tokenizer", kTok}, "exactly one of --text and --file");
  expect(segpipe::cmd_tokenize, {"--tokenizer", kTok, "--text", "a", "--file", "b"}, "exactly one of");
  expect(segpipe::cmd_tokenize, {"--tokenizer", kTok, "--text", "a", "--jsonl"}, "--jsonl needs --file");
  expect(segpipe::cmd_tokenize, {"--tokenizer", kTok, "--text"}, "--text needs a value");
  expect(segpipe::cmd_tokenize, {"--tokenizer", kTok, "--bogus"}, "unknown argument '--bogus'");
  expect(segpipe::cmd_tokenize, {"--tokenizer", kTok, "--text", "\xFF"}, "--text: text: invalid UTF-8");
  expect(segpipe::cmd_tokenize, {"--tokenizer", kTok, "--file", "/nonexistent/x.txt"}, "--file /nonexistent/x.txt");
  expect(segpipe::cmd_tokenize, {"--tokenizer", "/nonexistent/tok", "--text", "a"}, "/nonexistent/tok");
  expect(segpipe::cmd_detokenize, {"--tokenizer", kTok, "--ids", "1 2x 3"}, "--ids: '2x'");
  expect(segpipe::cmd_detokenize, {"--tokenizer", kTok, "--ids", "99999999"}, "--ids: token id 99999999");
  expect(segpipe::cmd_chat_template, {"--tokenizer", kTok}, "--messages is required");
  expect(segpipe::cmd_chat_template, {"--tokenizer", kTok, "--messages", "/nonexistent/m.json"}, "/nonexistent/m.json");
}

}  // namespace
