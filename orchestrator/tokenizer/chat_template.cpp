#include "orchestrator/tokenizer/chat_template.h"

#include <cstdio>

#include "segments/core/errors.h"

namespace segpipe {
namespace {

using nlohmann::ordered_json;

// Fingerprint of the chat_template in Qwen3's tokenizer_config.json (4,116 characters), the template
// render_chat() reproduces. tests/tokenizer checks the vendored file against it.
constexpr uint64_t kQwen3TemplateFingerprint = 0x2bfdb7aa9754484eull;

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
// Python's str.lstrip('\n') / rstrip('\n') / strip('\n').
std::string lstrip_nl(const std::string& s) {
  const size_t i = s.find_first_not_of('\n');
  return i == std::string::npos ? std::string() : s.substr(i);
}
std::string rstrip_nl(const std::string& s) {
  const size_t i = s.find_last_not_of('\n');
  return i == std::string::npos ? std::string() : s.substr(0, i + 1);
}
std::string strip_nl(const std::string& s) { return lstrip_nl(rstrip_nl(s)); }
// Python's s.split(sep)[0] and s.split(sep)[-1].
std::string before_first(const std::string& s, const std::string& sep) {
  const size_t i = s.find(sep);
  return i == std::string::npos ? s : s.substr(0, i);
}
std::string after_last(const std::string& s, const std::string& sep) {
  const size_t i = s.rfind(sep);
  return i == std::string::npos ? s : s.substr(i + sep.size());
}

// Jinja truthiness of the values the template tests (`if message.tool_calls`, `if tools`).
bool truthy(const ordered_json& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();
  if (v.is_array() || v.is_object()) return !v.empty();
  if (v.is_number_integer()) return v.get<int64_t>() != 0;
  if (v.is_number()) return v.get<double>() != 0.0;
  return true;
}

void dumps(const ordered_json& v, std::string& out) {
  if (v.is_object()) {
    out += '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) out += ", ";
      first = false;
      out += ordered_json(it.key()).dump();
      out += ": ";
      dumps(it.value(), out);
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out += ", ";
      dumps(v[i], out);
    }
    out += ']';
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    // Python prints non-finite numbers as NaN / Infinity; nlohmann would print null.
    if (d != d) out += "NaN";
    else if (d > 1.7976931348623157e308) out += "Infinity";
    else if (d < -1.7976931348623157e308) out += "-Infinity";
    else out += v.dump();  // shortest round-trip form with ".0" for integers, as Python's repr
  } else {
    // Strings: the same escapes as Python with ensure_ascii=False (\" \\ \b \f \n \r \t, \u00XX).
    out += v.dump(-1, ' ', false, ordered_json::error_handler_t::strict);
  }
}

}  // namespace

std::string python_json_dumps(const ordered_json& value) {
  std::string out;
  dumps(value, out);
  return out;
}

uint64_t ChatTemplate::fingerprint(const std::string& source) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : source) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

ChatTemplate::ChatTemplate(const std::string& source, const std::string& origin) {
  const uint64_t f = fingerprint(source);
  if (f != kQwen3TemplateFingerprint) {
    char hex[32];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(f));
    throw InputError(origin + ": key 'chat_template': not the Qwen3 chat template this build renders (fingerprint " +
                     hex + ")");
  }
}

std::vector<ChatMessage> parse_chat_messages(const ordered_json& j, const std::string& origin) {
  const auto fail = [&](const std::string& key, const std::string& why) -> void {
    throw InputError(origin + ": key '" + key + "': " + why);
  };
  if (!j.is_array()) fail("", "expected a JSON array of messages");
  if (j.empty()) fail("", "no messages");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < j.size(); ++i) {
    // Built with append: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string&&.
    std::string at = "[";
    at += std::to_string(i);
    at += ']';
    const ordered_json& m = j[i];
    if (!m.is_object()) fail(at, "expected an object with \"role\" and \"content\"");
    ChatMessage msg;
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) fail(at + ".role", "expected a string");
    msg.role = role->get<std::string>();
    // The template concatenates and searches content as a string; transformers fails on null too.
    auto content = m.find("content");
    if (content == m.end() || !content->is_string()) fail(at + ".content", "expected a string");
    msg.content = content->get<std::string>();
    if (auto r = m.find("reasoning_content"); r != m.end() && !r->is_null()) {
      if (!r->is_string()) fail(at + ".reasoning_content", "expected a string or null");
      msg.reasoning_content = r->get<std::string>();
    }
    if (auto t = m.find("tool_calls"); t != m.end() && !t->is_null()) {
      if (!t->is_array()) fail(at + ".tool_calls", "expected an array");
      for (size_t k = 0; k < t->size(); ++k) {
        const ordered_json& call = (*t)[k];
        const std::string key = at + ".tool_calls[" + std::to_string(k) + "]";
        if (!call.is_object()) fail(key, "expected an object");
        const ordered_json& fn = call.contains("function") && truthy(call["function"]) ? call["function"] : call;
        if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string())
          fail(key, "expected \"name\" (or \"function\": {\"name\", \"arguments\"})");
        if (!fn.contains("arguments")) fail(key + ".arguments", "missing");
      }
      msg.tool_calls = *t;
    }
    out.push_back(std::move(msg));
  }
  return out;
}

std::string render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt, bool enable_thinking,
                        const ordered_json& tools) {
  if (messages.empty()) throw InputError("messages: no messages");
  std::string out;
  if (truthy(tools)) {
    out += "<|im_start|>system\n";
    if (messages[0].role == "system") out += messages[0].content + "\n\n";
    out += "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
           "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
    for (const auto& tool : tools) {
    out += '\n';
    out += python_json_dumps(tool);
  }
    out += "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
           "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
           "<args-json-object>}\n</tool_call><|im_end|>\n";
  } else if (messages[0].role == "system") {
    out += "<|im_start|>system\n" + messages[0].content + "<|im_end|>\n";
  }

  // The last user turn that is a real query (not a tool response passed as a user turn): reasoning is
  // kept only for assistant turns after it, i.e. for the current multi-step answer.
  const auto n = static_cast<std::ptrdiff_t>(messages.size());
  std::ptrdiff_t last_query_index = n - 1;
  for (std::ptrdiff_t i = n - 1; i >= 0; --i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" && !(starts_with(m.content, "<tool_response>") && ends_with(m.content, "</tool_response>"))) {
      last_query_index = i;
      break;
    }
  }

  for (std::ptrdiff_t i = 0; i < n; ++i) {
    const ChatMessage& m = messages[i];
    const bool first = i == 0, last = i == n - 1;
    if (m.role == "user" || (m.role == "system" && !first)) {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    } else if (m.role == "assistant") {
      std::string content = m.content;
      std::string reasoning;
      if (m.reasoning_content) {
        reasoning = *m.reasoning_content;
      } else if (m.content.find("</think>") != std::string::npos) {
        content = lstrip_nl(after_last(m.content, "</think>"));
        reasoning = lstrip_nl(after_last(rstrip_nl(before_first(m.content, "</think>")), "<think>"));
      }
      if (i > last_query_index && (last || !reasoning.empty()))
        out += "<|im_start|>" + m.role + "\n<think>\n" + strip_nl(reasoning) + "\n</think>\n\n" + lstrip_nl(content);
      else
        out += "<|im_start|>" + m.role + "\n" + content;
      if (truthy(m.tool_calls)) {
        for (size_t k = 0; k < m.tool_calls.size(); ++k) {
          if ((k == 0 && !content.empty()) || k > 0) out += "\n";
          const ordered_json& call = m.tool_calls[k];
          const ordered_json& fn = call.contains("function") && truthy(call["function"]) ? call["function"] : call;
          out += "<tool_call>\n{\"name\": \"" + fn["name"].get<std::string>() + "\", \"arguments\": ";
          const ordered_json& args = fn["arguments"];
          out += args.is_string() ? args.get<std::string>() : python_json_dumps(args);
          out += "}\n</tool_call>";
        }
      }
      out += "<|im_end|>\n";
    } else if (m.role == "tool") {
      if (first || messages[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + m.content + "\n</tool_response>";
      if (last || messages[i + 1].role != "tool") out += "<|im_end|>\n";
    }
  }
  if (add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    if (!enable_thinking) out += "<think>\n\n</think>\n\n";
  }
  return out;
}

}  // namespace segpipe
