// How the pipeline library reports a bad input: one InputError line "file:line:column: message".
// Internal to orchestrator/pipeline/ (parse and validate share it).
#pragma once
#include <yaml-cpp/mark.h>

#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/pipeline/pipeline_spec.h"
#include "segments/core/errors.h"

namespace segpipe::pipeline_detail {

// yaml-cpp marks are 0-based and -1 when unknown (e.g. the root of an empty document).
inline SourceMark to_mark(const YAML::Mark& m) {
  if (m.line < 0 || m.column < 0) return SourceMark{1, 1};
  return SourceMark{m.line + 1, m.column + 1};
}

inline std::string located(const std::string& source, SourceMark m, const std::string& message) {
  if (m.line <= 0) return source + ": " + message;  // a spec built in code has no position
  return source + ":" + std::to_string(m.line) + ":" + std::to_string(m.column) + ": " + message;
}

[[noreturn]] inline void fail_at(const std::string& source, SourceMark m, const std::string& message) {
  throw InputError(located(source, m, message));
}

// " (did you mean 'device'?)" when a known key is within a small edit distance of `word`, else "".
// Typos are the common case of an unknown key, so naming the intended key is worth a few lines.
std::string did_you_mean(std::string_view word, const std::vector<std::string_view>& known);

// True when `text` is well-formed UTF-8 without control characters (tab included): what a name or a
// path in a pipeline may hold. yaml-cpp passes malformed bytes through, and its emitter then writes
// text that does not read back the same.
bool is_printable_utf8(std::string_view text);

// "'x'" with non-printable bytes escaped, so that a message stays one printable line whatever the
// input holds (fuzzed or binary files).
std::string quote_value(std::string_view text);

}  // namespace segpipe::pipeline_detail
