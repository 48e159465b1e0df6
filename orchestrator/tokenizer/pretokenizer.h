// Pre-tokenization: cuts normalized text into the pieces ("words") that BPE merges within, following
// the tokenizer.json steps (for Qwen: Split with the checkpoint's regex, Isolated, then ByteLevel without
// its own regex). Pieces are byte ranges; the byte-level alphabet never has to be materialized because
// BPE starts from one symbol per raw byte.
#pragma once
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/tokenizer/regex.h"
#include "orchestrator/tokenizer/tokenizer_json.h"

namespace segpipe::tok {

class PreTokenizer {
 public:
  PreTokenizer(const std::vector<PreTokenizerStep>& steps, const std::string& path);

  // Appends the pieces of `text` to `out`. They view `text`, except where a ByteLevel step with
  // add_prefix_space prepends a space: such pieces live in `storage` (a deque, so earlier pieces stay put; kept alive by the caller).
  void split(std::string_view text, std::vector<std::string_view>& out, std::deque<std::string>& storage) const;

 private:
  struct Step {
    PreTokenizerStep config;
    std::unique_ptr<Regex> regex;  // Split pattern, or the GPT-2 regex of ByteLevel with use_regex
  };
  std::vector<Step> steps_;
};

}  // namespace segpipe::tok
