#define PCRE2_CODE_UNIT_WIDTH 8
#include "orchestrator/tokenizer/regex.h"

#include <pcre2.h>

#include "orchestrator/tokenizer/utf8.h"
#include "segments/core/errors.h"

namespace segpipe::tok {
namespace {

// Oniguruma's Unicode White_Space set, in character-class syntax.
constexpr const char* kSpaceSet = "\\t\\n\\x{0B}\\f\\r\\x{85}\\p{Zs}\\p{Zl}\\p{Zp}";

// Match data and JIT stack are per thread, so that one Tokenizer can encode on many threads at once.
// The JIT stack grows up to 64 MiB: `\s+(?!\S)` backtracks over whitespace runs, and a long run must not
// make the match fail where Oniguruma succeeds.
struct Scratch {
  pcre2_match_data* data = pcre2_match_data_create(32, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  Scratch() {
    if (!data || !stack || !context) throw RuntimeFailure("tokenizer: out of memory for regex scratch space");
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~Scratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

std::string oniguruma_compatible_pattern(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  size_t class_start = 0;  // index just after '[' or '[^': a ']' there is a literal
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 's') {
        out += in_class ? std::string(kSpaceSet) : "[" + std::string(kSpaceSet) + "]";
      } else if (n == 'S' && !in_class) {
        out += "[^" + std::string(kSpaceSet) + "]";
      } else {
        // `\S` inside a class has no class-syntax complement; it keeps PCRE2's meaning (differs only on
        // U+180E). Every other escape is copied whole so that `\\s` stays a backslash and an 's'.
        out += c;
        out += n;
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      class_start = i + 1;
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX [:name:]
      const size_t end = p.find(":]", i + 2);
      if (end != std::string::npos) {
        out.append(p, i, end + 2 - i);
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']' && i != class_start) in_class = false;
    out += c;
  }
  return out;
}

Regex::Regex(const std::string& pattern, bool is_regex, const std::string& origin) {
  compiled_ = is_regex ? oniguruma_compatible_pattern(pattern) : pattern;
  uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
  if (!is_regex) options |= PCRE2_LITERAL;
  if (!utf8::is_valid(compiled_)) throw InputError(origin + ": pattern is not valid UTF-8");
  int err = 0;
  PCRE2_SIZE at = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(compiled_.data()), compiled_.size(), options,
                                   &err, &at, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw InputError(origin + ": invalid regex at offset " + std::to_string(at) + ": " +
                     reinterpret_cast<const char*>(msg));
  }
  code_ = code;
  // JIT is an optimization only: where it is unavailable the interpreter gives the same matches.
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  Scratch& s = scratch();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  size_t last_end = static_cast<size_t>(-1);
  while (pos <= text.size()) {
    const int rc = jit_ ? pcre2_jit_match(code, subject, text.size(), pos, 0, s.data, s.context)
                        : pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, s.data, s.context);
    if (rc == PCRE2_ERROR_NOMATCH) return;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw RuntimeFailure(std::string("tokenizer: split regex failed: ") + reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.data);
    const size_t start = ov[0], end = ov[1];
    if (start == end && end == last_end) {
      // Oniguruma does not report an empty match where the previous match ended: step one character.
      if (pos >= text.size()) return;
      size_t next = pos;
      utf8::next_code_point(text, next);
      pos = next;
      continue;
    }
    out.emplace_back(start, end);
    last_end = end;
    if (end > pos) {
      pos = end;
    } else {  // empty match: the next search starts one character later
      if (pos >= text.size()) return;
      size_t next = pos;
      utf8::next_code_point(text, next);
      pos = next;
    }
  }
}

}  // namespace segpipe::tok
