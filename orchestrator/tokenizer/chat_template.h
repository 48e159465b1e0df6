// The Qwen3 chat template (tokenizer_config.json "chat_template"), rendered in C++ with output
// identical to transformers' apply_chat_template. There is no general Jinja engine here: the template
// source is recognized by its fingerprint, and any other template is rejected rather than rendered wrong.
//
// What the template does, and this file mirrors line by line:
//   - system first: its own block (or, with tools, followed by the "# Tools" section);
//   - user / later system turns verbatim; tool turns grouped into one user turn of <tool_response>s;
//   - assistant turns: reasoning is taken from reasoning_content, or from "<think>...</think>" in the
//     content; it is kept only for assistant turns after the last real user query (the
//     multi_step_tool / last_query_index scan), and there only for the final turn or when non-empty;
//   - tool_calls as <tool_call> JSON; the generation prompt, with an empty think block when
//     enable_thinking is false (--no-thinking).
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace segpipe {

struct ChatMessage {
  std::string role;                              // system, user, assistant, tool (others render nothing)
  std::string content;
  std::optional<std::string> reasoning_content;  // absent or null: taken from <think> in content
  nlohmann::ordered_json tool_calls;             // null, or the array given (keys keep their order)
};

// Reads a JSON array of {"role", "content", ["reasoning_content"], ["tool_calls"]}. Throws InputError
// naming `origin` and the key (e.g. "messages.json: key '[2].content': expected a string").
std::vector<ChatMessage> parse_chat_messages(const nlohmann::ordered_json& messages, const std::string& origin);

// Renders Qwen3's template. `tools`: null or an array of tool schemas (printed with Python's json.dumps
// spacing, as the template's tojson does).
std::string render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt, bool enable_thinking,
                        const nlohmann::ordered_json& tools = nullptr);

class ChatTemplate {
 public:
  // Throws InputError("<origin>: key 'chat_template': ...") when the source is not a template this
  // build renders (today: Qwen3's).
  ChatTemplate(const std::string& source, const std::string& origin);
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt, bool enable_thinking,
                     const nlohmann::ordered_json& tools = nullptr) const {
    return render_chat(messages, add_generation_prompt, enable_thinking, tools);
  }
  // FNV-1a 64 of the template source, the key the recognition uses.
  static uint64_t fingerprint(const std::string& source);
};

// Python's json.dumps(value, ensure_ascii=False): ", " and ": " separators, keys in given order.
std::string python_json_dumps(const nlohmann::ordered_json& value);

}  // namespace segpipe
