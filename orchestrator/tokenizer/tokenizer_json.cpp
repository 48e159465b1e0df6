#include "orchestrator/tokenizer/tokenizer_json.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "segments/core/errors.h"
#include "segments/core/input_file.h"

namespace segpipe::tok {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& key, const std::string& why) {
  throw InputError(path + ": key '" + key + "': " + why);
}

// tokenizer.json of real models is ~11 MB; anything far larger is not one (and would be parsed whole).
constexpr uint64_t kMaxTokenizerFileBytes = 256ull << 20;

json parse(const std::string& path, const char* what) {
  const std::string text = read_input_file(path, kMaxTokenizerFileBytes, what);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw InputError(path + ": malformed JSON: " + e.what());
  }
}

const json& member(const json& obj, const std::string& path, const std::string& key, const char* name) {
  if (!obj.is_object()) fail(path, key, "expected an object");
  auto it = obj.find(name);
  if (it == obj.end()) fail(path, key + "." + name, "missing");
  return *it;
}

std::string string_at(const json& obj, const std::string& path, const std::string& key, const char* name) {
  const json& v = member(obj, path, key, name);
  if (!v.is_string()) fail(path, key + "." + name, "expected a string");
  return v.get<std::string>();
}

bool bool_or(const json& obj, const std::string& path, const std::string& key, const char* name, bool dflt) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) fail(path, key + "." + name, "expected true or false");
  return it->get<bool>();
}

AddedToken added_token(const json& t, const std::string& path, const std::string& key, int32_t id) {
  AddedToken a;
  a.id = id;
  a.content = string_at(t, path, key, "content");
  a.special = bool_or(t, path, key, "special", false);
  a.normalized = bool_or(t, path, key, "normalized", !a.special);
  a.lstrip = bool_or(t, path, key, "lstrip", false);
  a.rstrip = bool_or(t, path, key, "rstrip", false);
  a.single_word = bool_or(t, path, key, "single_word", false);
  if (a.content.empty()) fail(path, key + ".content", "empty added token");
  return a;
}

void read_normalizer(const json& n, const std::string& path, const std::string& key,
                     std::vector<NormalizerKind>& out) {
  if (n.is_null()) return;
  const std::string type = string_at(n, path, key, "type");
  if (type == "NFC") out.push_back(NormalizerKind::NFC);
  else if (type == "NFD") out.push_back(NormalizerKind::NFD);
  else if (type == "NFKC") out.push_back(NormalizerKind::NFKC);
  else if (type == "NFKD") out.push_back(NormalizerKind::NFKD);
  else if (type == "Sequence") {
    const json& list = member(n, path, key, "normalizers");
    if (!list.is_array()) fail(path, key + ".normalizers", "expected an array");
    for (size_t i = 0; i < list.size(); ++i)
      read_normalizer(list[i], path, key + ".normalizers[" + std::to_string(i) + "]", out);
  } else {
    fail(path, key + ".type", "unsupported normalizer type '" + type + "' (supported: NFC, NFD, NFKC, NFKD, Sequence)");
  }
}

SplitBehavior behavior(const std::string& s, const std::string& path, const std::string& key) {
  if (s == "Removed") return SplitBehavior::Removed;
  if (s == "Isolated") return SplitBehavior::Isolated;
  if (s == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (s == "Contiguous") return SplitBehavior::Contiguous;
  fail(path, key, "unknown split behavior '" + s + "'");
}

void read_pre_tokenizer(const json& p, const std::string& path, const std::string& key,
                        std::vector<PreTokenizerStep>& out) {
  if (p.is_null()) return;
  const std::string type = string_at(p, path, key, "type");
  if (type == "Sequence") {
    const json& list = member(p, path, key, "pretokenizers");
    if (!list.is_array()) fail(path, key + ".pretokenizers", "expected an array");
    for (size_t i = 0; i < list.size(); ++i)
      read_pre_tokenizer(list[i], path, key + ".pretokenizers[" + std::to_string(i) + "]", out);
  } else if (type == "Split") {
    PreTokenizerStep s;
    s.kind = PreTokenizerStep::Kind::Split;
    const json& pat = member(p, path, key, "pattern");
    if (pat.is_object() && pat.contains("Regex")) {
      s.pattern = string_at(pat, path, key + ".pattern", "Regex");
    } else if (pat.is_object() && pat.contains("String")) {
      s.pattern = string_at(pat, path, key + ".pattern", "String");
      s.pattern_is_regex = false;
    } else {
      fail(path, key + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
    }
    s.behavior = behavior(string_at(p, path, key, "behavior"), path, key + ".behavior");
    s.invert = bool_or(p, path, key, "invert", false);
    out.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    PreTokenizerStep s;
    s.kind = PreTokenizerStep::Kind::ByteLevel;
    s.add_prefix_space = bool_or(p, path, key, "add_prefix_space", true);
    s.use_regex = bool_or(p, path, key, "use_regex", true);
    out.push_back(std::move(s));
  } else {
    fail(path, key + ".type", "unsupported pre-tokenizer type '" + type + "' (supported: Split, ByteLevel, Sequence)");
  }
}

// The decoder must undo the byte-level alphabet; a Sequence holding only ByteLevel is the same thing.
void check_decoder(const json& d, const std::string& path, const std::string& key) {
  if (d.is_null()) fail(path, key, "missing decoder (a byte-level BPE needs the ByteLevel decoder)");
  const std::string type = string_at(d, path, key, "type");
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    const json& list = member(d, path, key, "decoders");
    if (!list.is_array() || list.empty()) fail(path, key + ".decoders", "expected a non-empty array");
    for (size_t i = 0; i < list.size(); ++i) check_decoder(list[i], path, key + ".decoders[" + std::to_string(i) + "]");
    return;
  }
  fail(path, key + ".type", "unsupported decoder type '" + type + "' (supported: ByteLevel)");
}

// tokenizer.json is 99% model.vocab and model.merges (300k entries). A full nlohmann DOM of them costs
// ~0.7 s to build and tear down, so they are streamed straight into TokenizerJson while nlohmann's own
// DOM builder assembles everything else (where they appear as an empty object / array). This keeps
// `segpipe tokenize` start-up well under a second on a small machine.
class TokenizerSax {
 public:
  TokenizerSax(json& root, TokenizerJson& out) : dom_(root, true), out_(out) {}

  bool null() { return scalar() && dom_.null(); }
  bool boolean(bool v) { return scalar() && dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) {
    if (mode_ == Mode::Vocab) return vocab_value(v);
    return scalar() && dom_.number_integer(v);
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (mode_ == Mode::Vocab) return vocab_value(v > static_cast<json::number_unsigned_t>(INT32_MAX) ? -1 : static_cast<int64_t>(v));
    return scalar() && dom_.number_unsigned(v);
  }
  bool number_float(json::number_float_t v, const json::string_t& s) { return scalar() && dom_.number_float(v, s); }
  bool binary(json::binary_t& b) { return scalar() && dom_.binary(b); }
  bool string(json::string_t& v) {
    if (mode_ == Mode::Merges) {
      if (depth_in_mode_ == 1) return merge_line(v);  // "a b" spelling
      if (pair_.size() >= 2) bad_merge();
      pair_.push_back(std::move(v));
      return true;
    }
    return scalar() && dom_.string(v);
  }
  bool key(json::string_t& k) {
    if (mode_ == Mode::Vocab) {
      vocab_key_ = std::move(k);
      return true;
    }
    last_key_ = k;
    return dom_.key(k);
  }
  bool start_object(std::size_t n) {
    if (mode_ == Mode::Vocab) fail(out_.path, "model.vocab." + vocab_key_, "expected a non-negative integer id");
    if (mode_ == Mode::Merges) bad_merge();
    if (path_.size() == 2 && path_[1] == "model" && last_key_ == "vocab") {
      mode_ = Mode::Vocab;
      depth_in_mode_ = 1;
      return dom_.start_object(0);
    }
    path_.push_back(last_key_);
    return dom_.start_object(n);
  }
  bool end_object() {
    if (mode_ == Mode::Vocab) {
      mode_ = Mode::Normal;
      return dom_.end_object();
    }
    path_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    if (mode_ == Mode::Vocab) fail(out_.path, "model.vocab." + vocab_key_, "expected a non-negative integer id");
    if (mode_ == Mode::Merges) {
      if (depth_in_mode_ != 1) bad_merge();
      depth_in_mode_ = 2;
      pair_.clear();
      return true;
    }
    if (path_.size() == 2 && path_[1] == "model" && last_key_ == "merges") {
      mode_ = Mode::Merges;
      depth_in_mode_ = 1;
      return dom_.start_array(0);
    }
    path_.push_back(last_key_);
    last_key_.clear();  // array elements have no key
    return dom_.start_array(n);
  }
  bool end_array() {
    if (mode_ == Mode::Merges) {
      if (depth_in_mode_ == 2) {
        if (pair_.size() != 2) bad_merge();
        out_.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
        depth_in_mode_ = 1;
        return true;
      }
      mode_ = Mode::Normal;
      return dom_.end_array();
    }
    path_.pop_back();
    return dom_.end_array();
  }
  template <class Exception>
  bool parse_error(std::size_t pos, const std::string& token, const Exception& e) {
    return dom_.parse_error(pos, token, e);
  }

 private:
  enum class Mode { Normal, Vocab, Merges };
  bool scalar() {
    if (mode_ == Mode::Vocab) fail(out_.path, "model.vocab." + vocab_key_, "expected a non-negative integer id");
    if (mode_ == Mode::Merges) bad_merge();
    return true;
  }
  bool vocab_value(int64_t v) {
    if (v < 0 || v > INT32_MAX) fail(out_.path, "model.vocab." + vocab_key_, "expected a non-negative integer id");
    out_.vocab.insert_or_assign(std::move(vocab_key_), static_cast<int32_t>(v));
    return true;
  }
  bool merge_line(const std::string& s) {
    const size_t sp = s.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos)
      bad_merge();
    out_.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    return true;
  }
  [[noreturn]] void bad_merge() {
    fail(out_.path, "model.merges[" + std::to_string(out_.merges.size()) + "]",
         "expected [\"left\", \"right\"] or \"left right\"");
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  TokenizerJson& out_;
  std::vector<std::string> path_;  // keys of the open containers, outermost first ("" for the root)
  std::string last_key_;
  Mode mode_ = Mode::Normal;
  int depth_in_mode_ = 0;
  std::string vocab_key_;
  std::vector<std::string> pair_;
};

void read_model(const json& m, const std::string& path, TokenizerJson& out) {
  const std::string type = string_at(m, path, "model", "type");
  if (type != "BPE") fail(path, "model.type", "unsupported model type '" + type + "' (only BPE)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = m.find(k);
    if (it != m.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty()))
      fail(path, std::string("model.") + k, "must be empty for a byte-level BPE");
  }
  auto dropout = m.find("dropout");
  if (dropout != m.end() && !dropout->is_null() && !(dropout->is_number() && dropout->get<double>() == 0.0))
    fail(path, "model.dropout", "BPE dropout is not supported (inference tokenizes deterministically)");
  out.ignore_merges = bool_or(m, path, "model", "ignore_merges", false);

  // vocab and merges were streamed by TokenizerSax; the DOM only shows whether they were present.
  const json& vocab = member(m, path, "model", "vocab");
  if (!vocab.is_object() || out.vocab.empty()) fail(path, "model.vocab", "expected a non-empty object");
  const json& merges = member(m, path, "model", "merges");
  if (!merges.is_array()) fail(path, "model.merges", "expected an array");
}

// tokenizer_config.json spells tokens either as a string or as an AddedToken object.
std::optional<std::string> token_name(const json& cfg, const std::string& path, const char* name) {
  auto it = cfg.find(name);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  fail(path, name, "expected a string or an object with \"content\"");
}

}  // namespace

TokenizerFiles locate_tokenizer_files(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  TokenizerFiles f;
  if (fs::is_directory(path, ec)) {
    f.json = (fs::path(path) / "tokenizer.json").string();
    if (!fs::is_regular_file(f.json, ec)) throw InputError("tokenizer " + path + ": no tokenizer.json in this folder");
  } else if (fs::exists(path, ec)) {
    f.json = path;
  } else {
    throw InputError("tokenizer " + path + ": no such file or folder");
  }
  const fs::path cfg = fs::path(f.json).parent_path() / "tokenizer_config.json";
  if (fs::is_regular_file(cfg, ec)) f.config = cfg.string();
  return f;
}

std::string read_file(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(std::string(what) + " " + path + ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw InputError(std::string(what) + " " + path + ": read error");
  return std::move(ss).str();
}

TokenizerJson read_tokenizer_json(const std::string& path) {
  TokenizerJson out;
  out.path = path;
  json j;
  {
    const std::string text = read_input_file(path, kMaxTokenizerFileBytes, "tokenizer file");
    out.vocab.reserve(1 << 18);
    out.merges.reserve(1 << 18);
    TokenizerSax sax(j, out);
    try {
      json::sax_parse(text, &sax);
    } catch (const json::exception& e) {
      throw InputError(path + ": malformed JSON: " + e.what());
    }
  }
  if (!j.is_object()) throw InputError(path + ": expected a JSON object at the top level");
  read_model(member(j, path, "", "model"), path, out);
  if (auto it = j.find("normalizer"); it != j.end()) read_normalizer(*it, path, "normalizer", out.normalizers);
  if (auto it = j.find("pre_tokenizer"); it != j.end())
    read_pre_tokenizer(*it, path, "pre_tokenizer", out.pre_tokenizers);
  auto dec = j.find("decoder");
  check_decoder(dec == j.end() ? json() : *dec, path, "decoder");
  if (auto it = j.find("added_tokens"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) fail(path, "added_tokens", "expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& t = (*it)[i];
      const std::string key = "added_tokens[" + std::to_string(i) + "]";
      const json& id = member(t, path, key, "id");
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
        fail(path, key + ".id", "expected a non-negative integer");
      out.added_tokens.push_back(added_token(t, path, key, static_cast<int32_t>(id.get<int64_t>())));
    }
  }
  return out;
}

TokenizerConfigJson read_tokenizer_config_json(const std::string& path) {
  const json j = parse(path, "tokenizer config");
  if (!j.is_object()) throw InputError(path + ": expected a JSON object at the top level");
  TokenizerConfigJson out;
  out.path = path;
  if (auto it = j.find("chat_template"); it != j.end() && !it->is_null()) {
    if (it->is_string()) {
      out.chat_template = it->get<std::string>();
    } else if (it->is_array()) {
      // Several named templates: the one called "default" is what apply_chat_template uses.
      for (const json& t : *it)
        if (t.is_object() && t.value("name", "") == "default" && t.contains("template") && t["template"].is_string())
          out.chat_template = t["template"].get<std::string>();
      if (!out.chat_template) fail(path, "chat_template", "a list of templates without one named \"default\"");
    } else {
      fail(path, "chat_template", "expected a string or a list of {name, template}");
    }
  }
  out.eos_token = token_name(j, path, "eos_token");
  out.pad_token = token_name(j, path, "pad_token");
  out.bos_token = token_name(j, path, "bos_token");
  if (auto it = j.find("added_tokens_decoder"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) fail(path, "added_tokens_decoder", "expected an object keyed by token id");
    for (auto t = it->begin(); t != it->end(); ++t) {
      const std::string key = "added_tokens_decoder." + t.key();
      size_t used = 0;
      long long id = -1;
      try {
        id = std::stoll(t.key(), &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != t.key().size() || id < 0 || id > INT32_MAX) fail(path, key, "key is not a token id");
      out.added_tokens_decoder.push_back(added_token(t.value(), path, key, static_cast<int32_t>(id)));
    }
  }
  return out;
}

}  // namespace segpipe::tok
