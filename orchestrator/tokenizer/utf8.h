// UTF-8 helpers shared by the encoder (input validation), the decoders (lossy decoding, the way Rust's
// String::from_utf8_lossy does it, since that is what Hugging Face tokenizers returns) and the tests.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace segpipe::utf8 {

// Offset of the first byte that is not part of a well-formed UTF-8 sequence (overlongs, surrogates and
// code points above U+10FFFF are ill-formed), or npos when the whole text is valid.
size_t find_invalid(std::string_view s);
inline bool is_valid(std::string_view s) { return find_invalid(s) == std::string_view::npos; }

// Appends `in` to `out`, replacing each maximal ill-formed subpart with U+FFFD (the Unicode
// "substitution of maximal subparts" practice that Rust and WHATWG follow). When `final` is false a
// trailing sequence that is incomplete but could still become valid is left unconsumed, so that a stream
// never prints half a character. Returns how many bytes of `in` were consumed.
size_t append_lossy(std::string_view in, std::string& out, bool final);

inline std::string lossy(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  append_lossy(in, out, true);
  return out;
}

// Decodes one code point at s[i] (s must be valid UTF-8 there) and advances i.
char32_t next_code_point(std::string_view s, size_t& i);
void append_code_point(std::string& out, char32_t cp);

}  // namespace segpipe::utf8
