// tokenizer.json and tokenizer_config.json, read into plain structs. Only what Qwen2/Qwen3-style
// byte-level BPE needs is accepted; anything else is rejected with an InputError that names the file and
// the key, rather than being tokenized differently from the reference without a word.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace segpipe::tok {

// One entry of tokenizer.json "added_tokens" (or tokenizer_config.json "added_tokens_decoder").
struct AddedToken {
  int32_t id = -1;
  std::string content;       // matched verbatim in the input text
  bool special = false;      // a control token (<|im_start|>); still matched in text, as HF does by default
  bool normalized = false;   // true: matched after normalization, false: on the raw text
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // the match swallows whitespace on its right
  bool single_word = false;  // only matched when not inside a word
};

enum class NormalizerKind { NFC, NFD, NFKC, NFKD };

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// One pre-tokenizer step; a "Sequence" is flattened into a list of these.
struct PreTokenizerStep {
  enum class Kind { Split, ByteLevel } kind = Kind::Split;
  // Split
  std::string pattern;        // the regex (or literal) that delimits pieces
  bool pattern_is_regex = true;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;        // true: the matches are the pieces, the gaps the delimiters
  // ByteLevel
  bool add_prefix_space = false;  // prepend " " to each piece that does not start with one
  bool use_regex = true;          // also split with the GPT-2 regex
};

struct TokenizerJson {
  std::string path;                              // for error messages
  std::vector<NormalizerKind> normalizers;       // applied in order; empty: none
  std::vector<PreTokenizerStep> pre_tokenizers;  // applied in order
  std::unordered_map<std::string, int32_t> vocab;  // byte-level spelling -> id
  std::vector<std::pair<std::string, std::string>> merges;  // rank = index
  bool ignore_merges = false;  // a word found whole in the vocabulary is not merged
  std::vector<AddedToken> added_tokens;
};

struct TokenizerConfigJson {
  std::string path;
  std::optional<std::string> chat_template;
  std::optional<std::string> eos_token;
  std::optional<std::string> pad_token;
  std::optional<std::string> bos_token;
  std::vector<AddedToken> added_tokens_decoder;
};

// Where a tokenizer PATH (a folder, or the tokenizer.json file) keeps its files. `config` is empty when
// there is no tokenizer_config.json beside tokenizer.json. Throws InputError when PATH does not exist or
// a folder has no tokenizer.json.
struct TokenizerFiles {
  std::string json;
  std::string config;
};
TokenizerFiles locate_tokenizer_files(const std::string& path);

// Throws segpipe::InputError naming the file and key on anything missing, malformed or unsupported.
TokenizerJson read_tokenizer_json(const std::string& path);
TokenizerConfigJson read_tokenizer_config_json(const std::string& path);

// Reads a whole file; throws InputError("<what> <path>: cannot open") when it is missing or unreadable.
std::string read_file(const std::string& path, const char* what);

}  // namespace segpipe::tok
