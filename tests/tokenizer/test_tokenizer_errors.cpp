// Bad tokenizer files and bad input: each must raise segpipe::InputError whose one-line message names
// the file and the key (or the input at fault).
#include <stdlib.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <nlohmann/json.hpp>

#include "orchestrator/tokenizer/tokenizer.h"
#include "segments/core/errors.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const json& vendored() {
  static const json j = [] {
    std::ifstream f(std::string(SEGPIPE_TOKENIZER_DIR) + "/tokenizer.json");
    return json::parse(f);
  }();
  return j;
}

fs::path temp_dir(const std::string& name) {
  std::string tmpl = (fs::temp_directory_path() / ("segpipe-tok-" + name + "-XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

// Expects load(path) to fail with an InputError naming `needle`; its message, or nothing if it loaded.
std::optional<std::string> load_error(const std::string& path, const std::string& needle) {
  try {
    segpipe::Tokenizer::load(path);
    ADD_FAILURE() << path << ": load succeeded";
    return std::nullopt;
  } catch (const segpipe::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << path << ": " << e.what();
    return e.what();
  }
}

// Writes a modified copy of the vendored tokenizer.json and expects load() to fail naming `needle`.
void expect_load_error(const std::string& name, const std::function<void(json&)>& edit, const std::string& needle) {
  json j = vendored();
  edit(j);
  const fs::path d = temp_dir(name);
  std::ofstream(d / "tokenizer.json") << j.dump();
  if (const auto msg = load_error(d.string(), needle)) {
    EXPECT_NE(msg->find((d / "tokenizer.json").string()), std::string::npos) << name << ": no file in " << *msg;
    EXPECT_EQ(msg->find('\n'), std::string::npos) << name << ": not one line: " << *msg;
  }
  fs::remove_all(d);
}

TEST(TokenizerErrors, MissingPathAndFolderWithoutTokenizer) {
  EXPECT_THROW(segpipe::Tokenizer::load("/nonexistent/segpipe/tokenizer"), segpipe::InputError);
  const fs::path d = temp_dir("empty");
  load_error(d.string(), "no tokenizer.json");
  fs::remove_all(d);
}

TEST(TokenizerErrors, MalformedJson) {
  const fs::path d = temp_dir("malformed");
  std::ofstream(d / "tokenizer.json") << "{\"model\": {";
  load_error((d / "tokenizer.json").string(), "malformed JSON");
  fs::remove_all(d);
}

TEST(TokenizerErrors, UnsupportedComponentsNameTheKey) {
  expect_load_error("model", [](json& j) { j["model"]["type"] = "WordPiece"; }, "key 'model.type'");
  expect_load_error("nomodel", [](json& j) { j.erase("model"); }, "key '.model': missing");
  expect_load_error("normalizer", [](json& j) { j["normalizer"] = {{"type", "Lowercase"}}; }, "key 'normalizer.type'");
  expect_load_error("pretok", [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["type"] = "Whitespace"; },
                    "key 'pre_tokenizer.pretokenizers[0].type'");
  expect_load_error("behavior", [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways"; },
                    "pre_tokenizer.pretokenizers[0].behavior");
  expect_load_error("regex", [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; },
                    "invalid regex");
  expect_load_error("decoder", [](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }, "key 'decoder.type'");
  expect_load_error("merge", [](json& j) { j["model"]["merges"][5] = json::array({"Ġ", "no-such-token"}); },
                    "key 'model.merges[5]'");
  expect_load_error("vocab", [](json& j) { j["model"]["vocab"]["Ġ"] = "x"; }, "key 'model.vocab.");
  expect_load_error("added", [](json& j) { j["added_tokens"][0].erase("content"); }, "key 'added_tokens[0].content'");
}

TEST(TokenizerErrors, BadConfigNamesTheKey) {
  const fs::path d = temp_dir("config");
  std::ofstream(d / "tokenizer.json") << vendored().dump();
  std::ofstream(d / "tokenizer_config.json") << R"({"eos_token": "<|no_such_token|>"})";
  load_error(d.string(), "tokenizer_config.json: key 'eos_token'");
  fs::remove_all(d);
}

TEST(TokenizerErrors, InvalidUtf8AndOutOfRangeIds) {
  const auto tok = segpipe::Tokenizer::load(SEGPIPE_TOKENIZER_DIR);
  for (const char* bad : {"\xFF", "a\xC3", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "ok\x80"})
    EXPECT_THROW(tok.encode(bad), segpipe::InputError) << bad;
  const std::vector<int32_t> too_big{tok.vocab_size()}, negative{-1};
  EXPECT_THROW(tok.decode(too_big), segpipe::InputError);
  EXPECT_THROW(tok.decode(negative), segpipe::InputError);
}

TEST(TokenizerErrors, ConfigValuesAreRead) {
  const auto tok = segpipe::Tokenizer::load(std::string(SEGPIPE_TOKENIZER_DIR) + "/tokenizer.json");
  // Expected names come from the vendored tokenizer_config.json, ids from tokenizer.json.
  EXPECT_EQ(tok.eos_token_id(), tok.token_to_id("<|im_end|>"));
  EXPECT_EQ(tok.pad_token_id(), tok.token_to_id("<|endoftext|>"));
  EXPECT_FALSE(tok.bos_token_id().has_value());
  EXPECT_EQ(tok.vocab_size(), static_cast<int32_t>(vendored()["model"]["vocab"].size() + vendored()["added_tokens"].size()));
  size_t specials = 0;
  for (const auto& t : vendored()["added_tokens"]) {
    EXPECT_EQ(tok.token_to_id(t["content"].get<std::string>()), t["id"].get<int32_t>());
    EXPECT_EQ(tok.is_special(t["id"].get<int32_t>()), t["special"].get<bool>());
    specials += t["special"].get<bool>();
  }
  EXPECT_EQ(tok.special_token_ids().size(), specials);
  const auto stops = tok.stop_token_ids();
  EXPECT_NE(std::find(stops.begin(), stops.end(), *tok.eos_token_id()), stops.end());
}

}  // namespace
