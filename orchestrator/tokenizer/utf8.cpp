#include "orchestrator/tokenizer/utf8.h"

namespace segpipe::utf8 {
namespace {

// For a lead byte, the number of continuation bytes and the allowed range of the FIRST continuation
// byte; the narrower first ranges exclude overlongs (E0, F0), surrogates (ED) and > U+10FFFF (F4).
struct Lead {
  uint8_t extra;
  uint8_t lo;
  uint8_t hi;
};
constexpr Lead classify(uint8_t b) {
  if (b < 0x80) return {0, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {1, 0x80, 0xBF};
  if (b == 0xE0) return {2, 0xA0, 0xBF};
  if (b == 0xED) return {2, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {2, 0x80, 0xBF};
  if (b == 0xF0) return {3, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {3, 0x80, 0xBF};
  if (b == 0xF4) return {3, 0x80, 0x8F};
  return {0xFF, 0, 0};  // 80..C1, F5..FF never start a sequence
}

// Length of the well-formed sequence at s[i] (> 0), or -(length of the maximal ill-formed subpart) when
// it is ill-formed, or 0 when it is a valid but incomplete prefix cut by the end of s.
int sequence_at(std::string_view s, size_t i) {
  const auto b = static_cast<uint8_t>(s[i]);
  const Lead l = classify(b);
  if (l.extra == 0) return 1;
  if (l.extra == 0xFF) return -1;
  for (int k = 1; k <= l.extra; ++k) {
    if (i + k >= s.size()) return 0;
    const auto c = static_cast<uint8_t>(s[i + k]);
    const uint8_t lo = k == 1 ? l.lo : 0x80;
    const uint8_t hi = k == 1 ? l.hi : 0xBF;
    if (c < lo || c > hi) return -k;
  }
  return l.extra + 1;
}

}  // namespace

size_t find_invalid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // ASCII fast path: most text is mostly ASCII.
    while (i < s.size() && static_cast<uint8_t>(s[i]) < 0x80) ++i;
    if (i == s.size()) break;
    const int n = sequence_at(s, i);
    if (n <= 0) return i;
    i += static_cast<size_t>(n);
  }
  return std::string_view::npos;
}

size_t append_lossy(std::string_view in, std::string& out, bool final) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";
  size_t i = 0;
  while (i < in.size()) {
    const int n = sequence_at(in, i);
    if (n > 0) {
      out.append(in.data() + i, static_cast<size_t>(n));
      i += static_cast<size_t>(n);
    } else if (n < 0) {
      out.append(kReplacement, 3);
      i += static_cast<size_t>(-n);
    } else {  // incomplete tail
      if (!final) return i;
      out.append(kReplacement, 3);
      i = in.size();
    }
  }
  return i;
}

char32_t next_code_point(std::string_view s, size_t& i) {
  const auto b = static_cast<uint8_t>(s[i]);
  if (b < 0x80) {
    ++i;
    return b;
  }
  const int extra = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : 1;
  char32_t cp = b & (0x3F >> extra);
  for (int k = 1; k <= extra; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  i += static_cast<size_t>(extra) + 1;
  return cp;
}

void append_code_point(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace segpipe::utf8
