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
  return " (did you mean '" + std::string(best) + "'?)";
}

std::string quote_value(std::string_view text) {
  constexpr size_t kMax = 80;  // a message names a value; it does not reprint a whole document
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x80) {
      out += static_cast<char>(c);  // UTF-8 is printable; a bad sequence cannot break the line
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (text.size() > kMax) out += "...";
  return out + "'";
}

}  // namespace segpipe::pipeline_detail
