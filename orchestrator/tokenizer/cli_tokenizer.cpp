#include "orchestrator/tokenizer/cli_tokenizer.h"

#include <charconv>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "orchestrator/tokenizer/chat_template.h"
#include "orchestrator/tokenizer/tokenizer.h"
#include "orchestrator/tokenizer/tokenizer_json.h"
#include "segments/core/errors.h"

namespace segpipe {
namespace {

constexpr const char* kTokenizeUsage =
    "usage: segpipe tokenize --tokenizer PATH (--text TEXT | --file FILE) [--jsonl]\n"
    "  Prints the token ids of the text, space-separated, on one line (no BOS/EOS added).\n"
    "  --tokenizer PATH  folder holding tokenizer.json, or the tokenizer.json file\n"
    "  --text TEXT       the text to encode\n"
    "  --file FILE       read the text from FILE\n"
    "  --jsonl           FILE holds a JSON array of strings; print each string's ids as a JSON array per line\n";
constexpr const char* kDetokenizeUsage =
    "usage: segpipe detokenize --tokenizer PATH --ids \"ID ...\"\n"
    "  Prints the decoded text of the space-separated token ids.\n";
constexpr const char* kChatTemplateUsage =
    "usage: segpipe chat-template --tokenizer PATH --messages FILE [--no-thinking] [--no-generation-prompt]\n"
    "  Prints the prompt the checkpoint's chat template renders for FILE, a JSON array of\n"
    "  {\"role\", \"content\"} messages (adding at most one trailing newline).\n"
    "  --no-thinking           enable_thinking=False: an empty think block after the generation prompt\n"
    "  --no-generation-prompt  do not end with the assistant turn opener\n";

// Flags of one command: which take a value and which are switches. Unknown flags, repeated flags and
// missing values are usage errors naming the flag.
struct Parsed {
  std::map<std::string, std::string> values;
  std::map<std::string, bool> switches;
  bool help = false;
  std::optional<std::string> get(const std::string& f) const {
    auto it = values.find(f);
    return it == values.end() ? std::nullopt : std::optional<std::string>(it->second);
  }
  bool on(const std::string& f) const { return switches.count(f) != 0; }
};

Parsed parse(const char* cmd, const std::vector<std::string>& args, std::initializer_list<const char*> with_value,
             std::initializer_list<const char*> without_value) {
  Parsed p;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      p.help = true;
      continue;
    }
    bool known = false;
    for (const char* f : with_value) {
      if (a != f) continue;
      known = true;
      if (i + 1 >= args.size()) throw InputError(std::string(cmd) + ": " + a + " needs a value");
      if (!p.values.emplace(a, args[++i]).second) throw InputError(std::string(cmd) + ": " + a + " given twice");
    }
    for (const char* f : without_value) {
      if (a != f) continue;
      known = true;
      p.switches[a] = true;
    }
    if (!known) throw InputError(std::string(cmd) + ": unknown argument '" + a + "' (see --help)");
  }
  return p;
}

std::string require(const Parsed& p, const char* cmd, const char* flag) {
  auto v = p.get(flag);
  if (!v) throw InputError(std::string(cmd) + ": " + flag + " is required (see --help)");
  return *v;
}

void print_ids(std::ostream& os, const std::vector<int32_t>& ids, const char* sep) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) os << sep;
    os << ids[i];
  }
}

}  // namespace

int cmd_tokenize(const std::vector<std::string>& args) {
  const Parsed p = parse("tokenize", args, {"--tokenizer", "--text", "--file"}, {"--jsonl"});
  if (p.help) {
    std::cout << kTokenizeUsage;
    return 0;
  }
  const std::string path = require(p, "tokenize", "--tokenizer");
  const auto text = p.get("--text"), file = p.get("--file");
  if (text.has_value() == file.has_value())
    throw InputError("tokenize: give exactly one of --text and --file (see --help)");
  if (p.on("--jsonl") && !file) throw InputError("tokenize: --jsonl needs --file (a JSON array of strings)");
  const Tokenizer tok = Tokenizer::load(path);

  if (!p.on("--jsonl")) {
    const std::string input = text ? *text : tok::read_file(*file, "--file");
    try {
      print_ids(std::cout, tok.encode(input), " ");
    } catch (const InputError& e) {
      throw InputError(std::string(text ? "--text" : "--file " + *file) + ": " + e.what());
    }
    std::cout << '\n';
    return 0;
  }
  nlohmann::json strings;
  try {
    strings = nlohmann::json::parse(tok::read_file(*file, "--file"));
  } catch (const nlohmann::json::exception& e) {
    throw InputError("--file " + *file + ": malformed JSON: " + e.what());
  }
  if (!strings.is_array()) throw InputError("--file " + *file + ": expected a JSON array of strings");
  for (size_t i = 0; i < strings.size(); ++i)
    if (!strings[i].is_string())
      throw InputError("--file " + *file + ": key '[" + std::to_string(i) + "]': expected a string");
  for (size_t i = 0; i < strings.size(); ++i) {
    std::vector<int32_t> ids;
    try {
      ids = tok.encode(strings[i].get_ref<const std::string&>());
    } catch (const InputError& e) {
      throw InputError("--file " + *file + ": key '[" + std::to_string(i) + "]': " + e.what());
    }
    std::cout << '[';
    print_ids(std::cout, ids, ",");
    std::cout << "]\n";
  }
  return 0;
}

int cmd_detokenize(const std::vector<std::string>& args) {
  const Parsed p = parse("detokenize", args, {"--tokenizer", "--ids"}, {});
  if (p.help) {
    std::cout << kDetokenizeUsage;
    return 0;
  }
  const std::string path = require(p, "detokenize", "--tokenizer");
  const std::string list = require(p, "detokenize", "--ids");
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < list.size()) {
    if (list[i] == ' ' || list[i] == '\t' || list[i] == '\n' || list[i] == ',') {
      ++i;
      continue;
    }
    int32_t v = 0;
    const auto [end, ec] = std::from_chars(list.data() + i, list.data() + list.size(), v);
    const size_t stop = static_cast<size_t>(end - list.data());
    const bool separated = stop == list.size() || list[stop] == ' ' || list[stop] == '\t' || list[stop] == '\n' ||
                           list[stop] == ',';
    if (ec != std::errc() || !separated) {
      const size_t word_end = list.find_first_of(" \t\n,", i);
      throw InputError("--ids: '" + list.substr(i, word_end - i) + "' is not a token id");
    }
    ids.push_back(v);
    i = stop;
  }
  const Tokenizer tok = Tokenizer::load(path);
  std::string text;
  try {
    text = tok.decode(ids);
  } catch (const InputError& e) {
    throw InputError(std::string("--ids: ") + e.what());
  }
  std::cout << text << '\n';
  return 0;
}

int cmd_chat_template(const std::vector<std::string>& args) {
  const Parsed p = parse("chat-template", args, {"--tokenizer", "--messages"}, {"--no-thinking", "--no-generation-prompt"});
  if (p.help) {
    std::cout << kChatTemplateUsage;
    return 0;
  }
  const std::string path = require(p, "chat-template", "--tokenizer");
  const std::string file = require(p, "chat-template", "--messages");
  // Only tokenizer_config.json is needed: rendering produces text, not ids.
  const tok::TokenizerFiles files = tok::locate_tokenizer_files(path);
  if (files.config.empty()) throw InputError("--tokenizer " + path + ": no tokenizer_config.json beside tokenizer.json");
  const tok::TokenizerConfigJson config = tok::read_tokenizer_config_json(files.config);
  if (!config.chat_template) throw InputError(files.config + ": key 'chat_template': missing");
  const ChatTemplate tmpl(*config.chat_template, files.config);
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(tok::read_file(file, "--messages"));
  } catch (const nlohmann::json::exception& e) {
    throw InputError("--messages " + file + ": malformed JSON: " + e.what());
  }
  const auto messages = parse_chat_messages(j, file);
  const std::string text = tmpl.render(messages, !p.on("--no-generation-prompt"), !p.on("--no-thinking"));
  std::cout << text;
  if (text.empty() || text.back() != '\n') std::cout << '\n';
  return 0;
}

}  // namespace segpipe
