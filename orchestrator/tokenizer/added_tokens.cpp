#include "orchestrator/tokenizer/added_tokens.h"

#include <algorithm>
#include <utf8proc.h>

#include "orchestrator/tokenizer/utf8.h"

namespace segpipe::tok {
namespace {

// Rust's char::is_whitespace: the White_Space property.
bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Rust's `c.is_alphanumeric() || c == '_'`, approximated by the letter and number categories
// (Rust's Alphabetic also takes some combining marks; no Qwen token uses single_word).
bool is_word_char(char32_t c) {
  if (c == '_') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

// Start of the code point that ends at `end` (text valid UTF-8, end > 0).
size_t previous_start(std::string_view text, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<uint8_t>(text[i]) & 0xC0) == 0x80) --i;
  return i;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  std::stable_sort(tokens_.begin(), tokens_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  for (size_t i = 0; i < tokens_.size(); ++i)
    by_first_byte_[static_cast<uint8_t>(tokens_[i].content[0])].push_back(static_cast<uint16_t>(i));
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  size_t start_offset = 0;  // end of the previous accepted token
  size_t pos = 0;           // where the search resumes (after the previous match, accepted or not)
  while (pos < text.size()) {
    // Leftmost-longest: the first position with any hit, the longest token there.
    const AddedToken* hit = nullptr;
    size_t at = pos;
    for (; at < text.size() && !hit; ++at) {
      const auto& cands = by_first_byte_[static_cast<uint8_t>(text[at])];
      for (uint16_t c : cands) {
        const std::string& s = tokens_[c].content;
        if (text.compare(at, s.size(), s) == 0) {
          hit = &tokens_[c];
          break;
        }
      }
    }
    if (!hit) break;
    size_t start = at - 1, stop = start + hit->content.size();
    pos = stop;
    if (hit->single_word) {
      bool start_ok = true, stop_ok = true;
      if (start > 0) {
        size_t i = previous_start(text, start);
        start_ok = !is_word_char(utf8::next_code_point(text, i));
      }
      if (stop < text.size()) {
        size_t i = stop;
        stop_ok = !is_word_char(utf8::next_code_point(text, i));
      }
      if (!start_ok || !stop_ok) continue;  // the span is consumed anyway, as in aho-corasick's find_iter
    }
    if (hit->lstrip) {
      size_t s = start;
      while (s > 0) {
        const size_t p = previous_start(text, s);
        size_t i = p;
        if (!is_white_space(utf8::next_code_point(text, i))) break;
        s = p;
      }
      start = std::max(s, start_offset);  // spaces already taken by the previous token stay there
    }
    if (hit->rstrip) {
      while (stop < text.size()) {
        size_t i = stop;
        if (!is_white_space(utf8::next_code_point(text, i))) break;
        stop = i;
      }
    }
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, hit->id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
}

}  // namespace segpipe::tok
