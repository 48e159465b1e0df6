// Chat template renderings against fixtures/chat_renderings.json, produced by transformers'
// apply_chat_template from the vendored tokenizer_config.json (tools/tokenizer/make_fixtures.py).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "orchestrator/tokenizer/chat_template.h"
#include "orchestrator/tokenizer/tokenizer.h"
#include "segments/core/errors.h"

namespace {

using nlohmann::ordered_json;

ordered_json fixtures() {
  std::ifstream f(std::string(SEGPIPE_TOKENIZER_FIXTURES) + "/chat_renderings.json");
  return ordered_json::parse(f);
}

TEST(ChatTemplate, VendoredTemplateIsRecognized) {
  const auto tok = segpipe::Tokenizer::load(SEGPIPE_TOKENIZER_DIR);
  ASSERT_TRUE(tok.chat_template().has_value());
  EXPECT_NO_THROW(segpipe::ChatTemplate(*tok.chat_template(), tok.config_path()));
}

TEST(ChatTemplate, OtherTemplatesAreRejected) {
  const auto tok = segpipe::Tokenizer::load(SEGPIPE_TOKENIZER_DIR);
  const std::string changed = *tok.chat_template() + " ";
  try {
    segpipe::ChatTemplate(changed, "cfg.json");
    FAIL() << "a changed template was accepted";
  } catch (const segpipe::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json: key 'chat_template'"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, MatchesTransformersRenderings) {
  const ordered_json cases = fixtures();
  ASSERT_GE(cases.size(), 30u);
  for (size_t i = 0; i < cases.size(); ++i) {
    const ordered_json& c = cases[i];
    const auto messages = segpipe::parse_chat_messages(c["messages"], "fixture");
    const ordered_json tools = c.contains("tools") ? c["tools"] : ordered_json();
    const std::string got = segpipe::render_chat(messages, c["add_generation_prompt"].get<bool>(),
                                                 c["enable_thinking"].get<bool>(), tools);
    EXPECT_EQ(got, c["text"].get<std::string>()) << "case " << i << ": " << c["messages"].dump();
  }
}

TEST(ChatTemplate, RendersTokenizeToTheSpecialTokenIds) {
  // The rendered prompt goes through encode(): its <|im_start|> / <|im_end|> must become single ids.
  const auto tok = segpipe::Tokenizer::load(SEGPIPE_TOKENIZER_DIR);
  const ordered_json cases = fixtures();
  const auto ids = tok.encode(cases[0]["text"].get<std::string>());
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), *tok.token_to_id("<|im_start|>"));
  EXPECT_EQ(tok.decode(ids), cases[0]["text"].get<std::string>());
}

TEST(ChatTemplate, BadMessagesNameTheKey) {
  const auto expect_error = [](const char* json, const char* key) {
    try {
      segpipe::parse_chat_messages(ordered_json::parse(json), "m.json");
      ADD_FAILURE() << "accepted " << json;
    } catch (const segpipe::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  };
  expect_error("{}", "m.json: key ''");
  expect_error("[]", "no messages");
  expect_error(R"([{"content": "x"}])", "'[0].role'");
  expect_error(R"([{"role": "user", "content": null}])", "'[0].content'");
  expect_error(R"([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "reasoning_content": 3}])",
               "'[1].reasoning_content'");
  expect_error(R"([{"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": {}}}]}])",
               "'[0].tool_calls[0]'");
}

TEST(ChatTemplate, PythonJsonDumpsSpacing) {
  // The template's tojson is Python's json.dumps; the spacing is visible in the tools fixtures too.
  EXPECT_EQ(segpipe::python_json_dumps(ordered_json::parse(R"({"b": [1, 2.5, null], "a": "x\"y"})")),
            R"({"b": [1, 2.5, null], "a": "x\"y"})");
}

}  // namespace
