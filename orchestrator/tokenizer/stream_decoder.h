// Decoding while tokens arrive one at a time. A token may end in the middle of a UTF-8 sequence (byte
// tokens of CJK, emoji); printing its bytes at once would show broken characters, and replacing them
// with U+FFFD would be wrong once the next token completes the sequence. StreamDecoder holds back an
// incomplete trailing sequence until it is completed or proven invalid, so the concatenation of
// everything it returns equals Tokenizer::decode of all ids, and every returned chunk is valid UTF-8.
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "orchestrator/tokenizer/tokenizer.h"

namespace segpipe {

class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tok_(&tokenizer) {}

  // Text completed by this token (possibly empty). Throws InputError for an id out of range.
  std::string push(int32_t id);
  std::string push(std::span<const int32_t> ids);
  // The held-back bytes at the end of the stream: an incomplete sequence becomes U+FFFD.
  std::string finish();
  // Bytes held back now (0..3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tok_;
  std::string pending_;  // raw bytes not yet returned: a valid but incomplete UTF-8 prefix
};

}  // namespace segpipe
