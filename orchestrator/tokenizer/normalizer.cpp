#include "orchestrator/tokenizer/normalizer.h"

#include <cstdlib>
#include <memory>
#include <utf8proc.h>

#include "segments/core/errors.h"

namespace segpipe::tok {
namespace {

// True when no code point of s is U+0300 or above (every lead byte is below 0xCC). Such text is
// invariant under NFC: below U+0300 only Latin letters decompose canonically, and they recompose to
// themselves because no combining mark follows them. NFD does split them (U+00C0 -> A + U+0300) and the
// compatibility forms fold characters below U+0300 (U+00BD), so only NFC takes this shortcut.
bool below_combining_marks(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0xCC) return false;
  return true;
}

std::string apply(std::string_view s, NormalizerKind form) {
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalizerKind::NFC: options |= UTF8PROC_COMPOSE; break;
    case NormalizerKind::NFD: options |= UTF8PROC_DECOMPOSE; break;
    case NormalizerKind::NFKC: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormalizerKind::NFKD: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                          static_cast<utf8proc_ssize_t>(s.size()), &out,
                                          static_cast<utf8proc_option_t>(options));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> holder(out, &std::free);
  // The input was validated before; a failure here means utf8proc disagrees about validity.
  if (n < 0) throw InputError(std::string("text: Unicode normalization failed: ") + utf8proc_errmsg(n));
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

}  // namespace

std::string_view normalize(std::string_view s, const std::vector<NormalizerKind>& forms, std::string& storage) {
  std::string_view cur = s;
  for (NormalizerKind f : forms) {
    if (f == NormalizerKind::NFC && below_combining_marks(cur)) continue;
    storage = apply(cur, f);
    cur = storage;
  }
  return cur;
}

}  // namespace segpipe::tok
