#include "orchestrator/pipeline/yaml_errors.h"

#include <algorithm>
#include <cstdio>

namespace segpipe::pipeline_detail {

namespace {
// Levenshtein distance; keys are short, so the quadratic table is nothing.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}
}  // namespace

std::string did_you_mean(std::string_view word, const std::vector<std::string_view>& known) {
  if (word.size() > 64) return "";  // not a typo of a short key; keep the work bounded
  std::string_view best;
  size_t best_distance = 0;
  for (std::string_view k : known) {
    size_t d = edit_distance(word, k);
    if (best.empty() || d < best_distance) {
      best = k;
      best_distance = d;
    }
  }
  // Up to 2 edits, and fewer than half the key, so that 'id' does not suggest 'kind'.
  if (best.empty() || best_distance > 2 || best_distance * 2 >= std::max(word.size(), best.size())) return "";
  std::string out = " (did you mean '";  // appended piecewise: gcc 12 warns (-Wrestrict) on a + chain here
  out.append(best);
  out += "'?)";
  return out;
}

bool is_printable_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) return false;
      ++i;
      continue;
    }
    // Lead byte: sequence length and the smallest code point it may encode (no overlong forms).
    size_t n;
    char32_t cp, min;
    if ((c & 0xe0) == 0xc0) {
      n = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      n = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      n = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (i + n > text.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      unsigned char cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    if (cp >= 0x80 && cp <= 0x9f) return false;  // C1 controls
    i += n;
  }
  return true;
}

std::string quote_value(std::string_view text) {
  constexpr size_t kMax = 80;  // a message names a value; it does not reprint a whole document
  // Valid UTF-8 is shown as is; otherwise every non-ASCII byte is escaped, so that the message itself
  // stays valid text.
  const bool utf8 = is_printable_utf8(text);
  size_t shown = std::min(text.size(), kMax);
  while (utf8 && shown < text.size() && (static_cast<unsigned char>(text[shown]) & 0xc0) == 0x80) --shown;
  std::string out = "'";
  for (size_t i = 0; i < shown; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x80 && utf8) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (shown < text.size()) out += "...";
  return out + "'";
}

}  // namespace segpipe::pipeline_detail
