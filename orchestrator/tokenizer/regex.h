// A compiled split pattern (PCRE2, UTF + UCP, JIT) that behaves like the Oniguruma regex Hugging Face
// tokenizers uses for the same pattern string.
//
// The one difference that shows on real text is `\s`: Oniguruma's Unicode `\s` is exactly the
// White_Space property (TAB..CR, U+0020, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F,
// U+205F, U+3000), while PCRE2's UCP `\s` also takes U+180E (Mongolian vowel separator, no longer a
// space since Unicode 6.3). The pattern is therefore rewritten so `\s` and `\S` name that set explicitly.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace segpipe::tok {

class Regex {
 public:
  // `origin` names the file and key for the InputError thrown on a pattern PCRE2 rejects.
  Regex(const std::string& pattern, bool is_regex, const std::string& origin);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [start, end) byte ranges of all non-overlapping matches in `text` (valid UTF-8), scanning
  // left to right as Oniguruma's find_iter does (an empty match right after the previous match is skipped).
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

  // The pattern as given to PCRE2 after the `\s` rewrite (for tests and error messages).
  const std::string& compiled_pattern() const { return compiled_; }

 private:
  std::string compiled_;
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque so that users need not include pcre2.h
  bool jit_ = false;
};

// The rewrite described above, exposed for tests.
std::string oniguruma_compatible_pattern(const std::string& pattern);

}  // namespace segpipe::tok
