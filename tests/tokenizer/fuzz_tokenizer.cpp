// Fuzz target for the tokenizer: any bytes in, no crash; invalid UTF-8 is rejected with InputError;
// for valid UTF-8, decode(encode(s)) == NFC(s). Built as a libFuzzer target with SEGPIPE_FUZZ=ON (clang),
// and always as `tokenizer_fuzz_standalone` (fuzz_standalone_main.cpp) so gcc CI runs the same checks.
//
// One exception to the round trip is inherent to Hugging Face's design and reproduced on purpose: added
// tokens are cut out of the RAW text before NFC, so a combining mark right after one ("<think>" + U+0338)
// does not compose with its last character as NFC of the whole string would. When the ids hold an added
// token the check is therefore NFC(decode(encode(s))) == NFC(s).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "orchestrator/tokenizer/normalizer.h"
#include "orchestrator/tokenizer/stream_decoder.h"
#include "orchestrator/tokenizer/tokenizer.h"
#include "orchestrator/tokenizer/utf8.h"
#include "segments/core/errors.h"

namespace {

const segpipe::Tokenizer& tokenizer() {
  static const segpipe::Tokenizer t = segpipe::Tokenizer::load(SEGPIPE_TOKENIZER_DIR);
  return t;
}

[[noreturn]] void fail(const char* what, std::string_view input) {
  std::fprintf(stderr, "tokenizer fuzz: %s for input of %zu bytes:", what, input.size());
  for (unsigned char c : input.substr(0, 200)) std::fprintf(stderr, " %02x", c);
  std::fprintf(stderr, "\n");
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const segpipe::Tokenizer& tok = tokenizer();
  const std::string_view s(reinterpret_cast<const char*>(data), size);

  if (!segpipe::utf8::is_valid(s)) {
    try {
      tok.encode(s);
    } catch (const segpipe::InputError&) {
      return 0;
    }
    fail("invalid UTF-8 accepted", s);
  }

  const std::vector<int32_t> ids = tok.encode(s);
  const std::string decoded = tok.decode(ids);
  const std::string expected = segpipe::tok::nfc(s);
  bool has_added = false;
  for (int32_t id : ids) has_added |= tok.is_added(id);
  if (has_added ? segpipe::tok::nfc(decoded) != expected : decoded != expected) fail("round trip differs", s);

  // Streaming the same ids must give the same text, in chunks that are valid UTF-8.
  segpipe::StreamDecoder stream(tok);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string chunk = stream.push(id);
    if (!segpipe::utf8::is_valid(chunk)) fail("stream chunk is not valid UTF-8", s);
    streamed += chunk;
  }
  streamed += stream.finish();
  if (streamed != decoded) fail("stream decode differs from decode", s);

  // The input bytes read as token ids: arbitrary sequences must decode to valid UTF-8 without crashing.
  std::vector<int32_t> arbitrary;
  for (size_t i = 0; i + 3 <= size; i += 3)
    arbitrary.push_back(static_cast<int32_t>((data[i] | data[i + 1] << 8 | data[i + 2] << 16) % tok.vocab_size()));
  if (!segpipe::utf8::is_valid(tok.decode(arbitrary))) fail("decode produced invalid UTF-8", s);
  return 0;
}
