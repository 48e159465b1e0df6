// Unicode normalization (NFC for Qwen) with utf8proc, applied to the text between added tokens before
// it is split. NFC matters: "e\u0301" and "\u00e9" must give the same ids, as in the reference.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/tokenizer/tokenizer_json.h"

namespace segpipe::tok {

// Applies the forms in order to `s` (valid UTF-8) and returns the result: `s` itself when nothing can
// change (NFC of text without code points at or above U+0300 -- most input is ASCII, and this skips a
// copy), otherwise a view of `storage`, which holds the normalized text.
std::string_view normalize(std::string_view s, const std::vector<NormalizerKind>& forms, std::string& storage);

inline std::string nfc(std::string_view s) {
  std::string storage;
  return std::string(normalize(s, {NormalizerKind::NFC}, storage));
}

}  // namespace segpipe::tok
