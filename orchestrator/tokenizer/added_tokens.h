// Added tokens (<|im_start|>, <think>, ...) are found in the text before BPE sees it, as Hugging Face's
// AddedVocabulary does: leftmost-longest matching, then the single_word / lstrip / rstrip rules. Tokens
// with normalized=false are matched on the raw text (so NFC cannot change them), the others on the
// normalized text; the Tokenizer runs one matcher of each kind.
#pragma once
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "orchestrator/tokenizer/tokenizer_json.h"

namespace segpipe::tok {

class AddedTokenMatcher {
 public:
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);

  struct Segment {
    size_t start, end;  // byte range in the text given to split()
    int32_t id;         // the added token's id, or -1 for text between tokens
  };
  // Cuts `text` into plain segments and token segments, in order, covering it without gaps.
  void split(std::string_view text, std::vector<Segment>& out) const;
  bool empty() const { return tokens_.empty(); }

 private:
  std::vector<AddedToken> tokens_;             // longest first, so the first hit at a position wins
  std::array<std::vector<uint16_t>, 256> by_first_byte_;  // candidate indices into tokens_
};

}  // namespace segpipe::tok
